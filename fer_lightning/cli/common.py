"""Shared bits of the console entry points."""

from __future__ import annotations

from pathlib import Path

from fer_lightning.hardware import register_resolvers

# conf/ sits at the repository top level (the package is installed editable from the repo).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

register_resolvers()  # every config composed through CONFIG_DIR may use them
