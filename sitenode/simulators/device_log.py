"""What a simulated device saw, for checks made from the devices' side (`bench/chaos.py`):
every setpoint it applied, with the command id where the protocol carried one, and its
meter readings, as JSON lines appended to the file named by `GRIDMESH_SIM_DEVICE_LOG`.

Each line has `u` (the wall clock, Unix seconds: a reader maps it onto the simulated
clock it knows), `dev` (the device id) and `kind` (`apply`, `meter`, `boot`, ...). The
file is appended to and flushed per line (a killed simulator loses nothing it wrote);
with the variable unset nothing is written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

ENV = "GRIDMESH_SIM_DEVICE_LOG"


class DeviceLog:
    def __init__(self, path: str | Path | None = None) -> None:
        chosen = path if path is not None else os.environ.get(ENV) or None
        self.path = Path(chosen) if chosen else None
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a")

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def write(self, dev: str, kind: str, **fields: Any) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps({"u": round(time.time(), 4), "dev": dev, "kind": kind, **fields}) + "\n")
        self._file.flush()

    def read(self) -> list[dict[str, Any]]:
        """Every line written so far (a restarted simulator picks up where it was)."""
        if self.path is None or not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a kill
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_shared: DeviceLog | None = None


def shared() -> DeviceLog:
    """The process's log (opened on first use from the environment)."""
    global _shared  # noqa: PLW0603 - one file per simulator process
    if _shared is None:
        _shared = DeviceLog()
    return _shared
