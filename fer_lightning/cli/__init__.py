"""Console entry points (fer-train, fer-eval, fer-synth)."""
