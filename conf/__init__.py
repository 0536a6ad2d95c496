"""The Hydra configs, installed as the package ``fer_lightning.conf`` (see pyproject.toml)."""
