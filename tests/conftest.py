"""Test set-up: tests import the tiny-layout helpers from tests/layouts.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
