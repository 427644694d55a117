"""`gridmesh portfolio serve` as a subprocess for the benchmarks: started from a config body,
ready once it prints its port, always ended by `close` (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def gridmesh_command() -> list[str]:
    beside = Path(sys.executable).parent / "gridmesh"
    found = str(beside) if beside.exists() else shutil.which("gridmesh")
    return [found] if found else [sys.executable, "-m", "services.cli"]


class PortfolioProcess:
    def __init__(self, folder: Path, body: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.folder, self.env = folder, env or {}
        self.config = folder / "portfolio.yaml"
        self.config.write_text(yaml.safe_dump(body))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def command(self) -> tuple[list[str], str]:
        """The command line, and the line it prints once serving (ending in the port)."""
        serve = ["portfolio", "serve", "--config", str(self.config), "--insecure-loopback", "--listen", "127.0.0.1:0"]
        return [*gridmesh_command(), *serve], "portfolio serving on port "

    async def open(self, timeout: float = 60.0) -> None:
        command, ready = self.command()
        with (self.folder / "portfolio.out").open("wb") as out, (self.folder / "portfolio.err").open("wb") as err:
            env = {**os.environ, **self.env}
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portfolio exited with {self.proc.returncode}: {self.log_tail()}")
            for line in (self.folder / "portfolio.out").read_text().splitlines():
                if line.startswith(ready):
                    self.port = int(line.rsplit(" ", 1)[1])
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"portfolio did not start within {timeout} s: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 10) -> str:
        path = self.folder / "portfolio.err"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
