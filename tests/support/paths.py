"""Where things are, whatever the depth of the test module asking."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root (the folder holding `rocketd/`, `docs/` and `examples/`)."""
