"""A device adapter for sites without device connections yet: it accepts every command
and appends it to a log file, so an operator sees what the node would have sent.
`gridmesh sitenode serve` registers it for every asset that has no protocol adapter."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sitenode.dispatch import Command


class DryRunDevice:
    def __init__(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = log_path.open("a")

    async def execute(self, command: Command) -> None:
        self._file.write(
            json.dumps(
                {
                    "id": command.id,
                    "asset_id": command.asset_id,
                    "type": str(command.type),
                    "value_kw": command.value_kw,
                    "due_at": command.due_at.isoformat(),
                }
            )
            + "\n"
        )
        self._file.flush()
        os.fsync(self._file.fileno())  # what reached the "device" survives a crash, like a real one

    def close(self) -> None:
        self._file.close()
