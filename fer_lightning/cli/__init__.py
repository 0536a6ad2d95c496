"""Console entry points: fer-train, fer-eval, fer-synth, fer-predict, fer-export, fer-report."""
