"""Training methods beyond supervised fine-tuning: online semi-supervised LightningModules."""
