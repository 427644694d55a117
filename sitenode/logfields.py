"""The fields a log line carries besides its message: the site, the schedule version, the command id.

A call passes what it knows with `extra=fields(...)`; what a whole task knows (the site of a
node's loop) is bound once with `bind`, and every line logged in that task (and the tasks and
worker threads it starts) carries it; a process that serves one site sets it with
`set_default`. The JSON log format (`services.logging_setup`) writes them as fields of their
own; the human format leaves them out. No I/O here: `sitenode` only names the fields.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

FIELDS = ("site", "schedule_version", "command_id")

_VARS: dict[str, ContextVar[str | None]] = {name: ContextVar(f"gridmesh_log_{name}", default=None) for name in FIELDS}
_DEFAULTS: dict[str, str] = {}


def _checked(values: dict[str, str | None]) -> dict[str, str]:
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a log field: {', '.join(sorted(unknown))} (known: {', '.join(FIELDS)})")
    return {k: str(v) for k, v in values.items() if v}


def fields(**values: str | None) -> dict[str, str]:
    """`extra=` for one log call: the fields given and not empty."""
    return _checked(values)


def bind(**values: str | None) -> dict[str, Token[str | None]]:
    """Set fields for the current task (and what it starts from now on); `unbind` undoes it."""
    return {k: _VARS[k].set(v) for k, v in _checked(values).items()}


def unbind(tokens: dict[str, Token[str | None]]) -> None:
    for name, token in tokens.items():
        _VARS[name].reset(token)


def set_default(**values: str | None) -> None:
    """Process-wide fields (a node process serves one site); empty values remove a default."""
    checked = _checked(values)
    for name in values:
        _DEFAULTS.pop(name, None)
    _DEFAULTS.update(checked)


def current() -> dict[str, str]:
    """The process defaults overlaid with what the current task bound."""
    out = dict(_DEFAULTS)
    for name, var in _VARS.items():
        value = var.get()
        if value:
            out[name] = value
    return out
