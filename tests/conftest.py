"""Makes `tests.helpers` importable (configs name its classes by class_path) however pytest is started."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
