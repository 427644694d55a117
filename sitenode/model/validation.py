"""Turn pydantic's errors into gridmesh field violations that name the path and value.

`battery.capacity_kwh: must be > 0, got -5` reads better than pydantic's default and is
the same text whether the value came from YAML, CSV, Parquet or a gRPC request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from sitenode.errors import FieldViolation, InvalidInput

M = TypeVar("M", bound=pydantic.BaseModel)

# the pattern of every id (site, charger, load, circuit, session); site.py uses it
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for item in loc:
        if isinstance(item, int):
            text += f"[{item}]"
        else:
            text += f".{item}" if text else str(item)
    return text


def _describe(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    templates = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "literal_error": "must be one of {expected}",
        "extra_forbidden": "is not a known field",
        "missing": "is required",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "int_parsing": "must be an integer",
        "int_type": "must be an integer",
        "int_from_float": "must be an integer",
        "bool_parsing": "must be true or false",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "model_type": "must be a mapping",
        "dict_type": "must be a mapping",
        "finite_number": "must be a finite number",
        "string_too_short": "must not be empty",
        "too_short": "must not be empty",
        "timezone_aware": "must carry a timezone (UTC, e.g. 2025-01-15T00:00:00Z)",
        "string_too_long": "must be at most {max_length} characters",
        "datetime_parsing": "must be an ISO 8601 time",
        "datetime_from_date_parsing": "must be an ISO 8601 time",
        "datetime_type": "must be an ISO 8601 time",
    }
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == ID_PATTERN:
        text = "must start with a letter or digit and hold only letters, digits and _ . : -"
    elif kind in templates:
        # 0 reads better than 0.0 in a limit
        tidy = {k: (int(x) if isinstance(x, float) and x.is_integer() else x) for k, x in ctx.items()}
        text = templates[kind].format(**tidy)
    else:
        text = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            text = text.removeprefix(prefix)
    if kind in ("missing", "extra_forbidden"):
        return text
    return f"{text}, got {got!r}"


def violations_from(exc: pydantic.ValidationError, prefix: str = "") -> InvalidInput:
    out = []
    for err in exc.errors():
        path = _path(tuple(err["loc"]))
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        out.append(FieldViolation(path, _describe(err)))
    return InvalidInput(out)


def parse(model: type[M], data: Any, prefix: str = "") -> M:
    """Validate `data` as `model`, raising InvalidInput with field paths under `prefix`."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise violations_from(exc, prefix) from None
    except InvalidInput as exc:
        raise (exc.prefixed(prefix) if prefix else exc) from None


def load_yaml_config(model: type[M], path: str | Path) -> tuple[M, Path]:
    """A service's YAML config validated as `model` (errors under `config`), and the folder
    its relative paths are resolved from."""
    file = Path(path)
    if not file.exists():
        raise InvalidInput.one("config", f"file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput.one("config", f"is not valid YAML ({exc})") from None
    return parse(model, data), file.resolve().parent
