"""How every gridmesh service logs: to stderr, as human lines or, with `GRIDMESH_LOG_FORMAT=json`,
as one JSON object per line.

A JSON line holds `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message`, the
fields of `sitenode.logfields` that are known (`site`, `schedule_version`, `command_id`: passed
with `extra=`, bound to the task, or the process's defaults), any other `extra=` field, and
`exception` (the traceback) when there is one. The human format is unchanged:
`time LEVEL logger: message`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sitenode import logfields

FORMATS = ("text", "json")
HUMAN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# what every LogRecord has: anything else on a record came with `extra=`
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime"}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update(logfields.current())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None and value != "":
                body[key] = _plain(value)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, allow_nan=True)


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(HUMAN)
    raise ValueError(f"not a log format ({', '.join(FORMATS)}): {fmt!r}")


def configure(level: str, fmt: str, loggers: Iterable[str], stream: TextIO | None = None) -> None:
    """A service's own log lines (`loggers`) to stderr at `level`; the libraries' at WARNING,
    so a day's log stays readable. `fmt`: "text" (the default) or "json"."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])  # as before: a no-op where handlers exist
    for name in loggers:
        logging.getLogger(name).setLevel(level)
