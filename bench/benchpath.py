"""Imported first by every benchmark run as `python bench/NAME.py`: Python puts bench/ on
the path, where bench/sitenode.py would shadow the `sitenode` package it measures."""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.modules.pop("sitenode", None)
