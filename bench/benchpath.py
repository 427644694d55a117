"""Imported first by every benchmark run as `python bench/NAME.py`: Python puts bench/ at
the head of the path, where bench/sitenode.py would shadow the `sitenode` package it
measures. The project root goes first instead and bench/ last: the package wins, and
this module (which spawned worker processes import again) stays importable."""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
_rest = [p for p in sys.path if Path(p or ".").resolve() not in (_here, _here.parent)]
sys.path[:] = [str(_here.parent), *_rest, str(_here)]
if str(getattr(sys.modules.get("sitenode"), "__file__", "")).startswith(str(_here)):
    del sys.modules["sitenode"]
