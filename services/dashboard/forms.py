"""The page's edit forms, as JSON bodies, into operator API requests.

Only shape is checked here (a number where a number belongs, a date that parses): the
portfolio checks meaning (ranges, known sites, event windows) and its field errors reach
the page under the same field names as these, so the form shows both kinds alike.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from services.convert import ts
from services.dashboard.views import PRIORITY_KEYS, WEIGHT_KEYS
from services.stubs.gridmesh.v1 import portfolio_pb2, sitenode_pb2
from sitenode.errors import FieldViolation as Violation
from sitenode.errors import InvalidInput


def _number(value: Any, field: str, errors: list[Violation]) -> float | None:
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            errors.append(Violation(field, "is required"))
            return None
        try:
            value = float(value)
        except ValueError:
            errors.append(Violation(field, f"must be a number, got {value!r}"))
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.append(Violation(field, f"must be a number, got {value!r}"))
        return None
    return float(value)


def _whole(value: Any, field: str, errors: list[Violation]) -> int | None:
    number = _number(value, field, errors)
    if number is None:
        return None
    if number != int(number):
        errors.append(Violation(field, f"must be a whole number, got {number:g}"))
        return None
    return int(number)


def _time(value: Any, field: str, errors: list[Violation]) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        errors.append(Violation(field, "is required"))
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        errors.append(Violation(field, f"must be a date and time like 2025-06-20T18:00Z, got {value!r}"))
        return None
    if at.tzinfo is None:
        errors.append(Violation(field, "must carry a time zone (Z or +01:00)"))
        return None
    return at


def _object(body: Any, field: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput.one(field, "must be a JSON object")
    return body


def _raise(errors: list[Violation]) -> None:
    if errors:
        raise InvalidInput(errors)


def settings_request(site_id: str, body: Any) -> portfolio_pb2.SetSiteSettingsRequest:
    """{"weights": {cost, carbon, peak}, "priorities": {fleet, ...}}; either part may be absent."""
    body = _object(body, "body")
    errors: list[Violation] = []
    request = portfolio_pb2.SetSiteSettingsRequest(site_id=site_id)
    if body.get("weights") is not None:
        weights = _object(body["weights"], "weights")
        values = {k: _number(weights.get(k), f"weights.{k}", errors) for k in WEIGHT_KEYS}
        if not errors:
            request.weights.CopyFrom(sitenode_pb2.ObjectiveWeights(**values))
    if body.get("priorities") is not None:
        priorities = _object(body["priorities"], "priorities")
        ranks = {k: _whole(priorities.get(k), f"priorities.{k}", errors) for k in PRIORITY_KEYS}
        if not errors:
            request.priorities.CopyFrom(sitenode_pb2.Priorities(**ranks))
    if not request.HasField("weights") and not request.HasField("priorities") and not errors:
        errors.append(Violation("body", "give weights, priorities or both"))
    _raise(errors)
    return request


def feeder_message(body: Any) -> portfolio_pb2.Feeder:
    """{"feeder_id", "site_ids": [...], "cap_kw", "description"}: a flat cap (a per-step
    profile stays an API matter)."""
    body = _object(body, "feeder")
    errors: list[Violation] = []
    sites = body.get("site_ids")
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        errors.append(Violation("feeder.site_ids", "must be a list of site ids"))
        sites = []
    cap = _number(body.get("cap_kw"), "feeder.cap_kw", errors)
    _raise(errors)
    return portfolio_pb2.Feeder(
        feeder_id=str(body.get("feeder_id") or ""),
        site_ids=sites,
        cap_kw=cap,
        description=str(body.get("description") or ""),
    )


def event_message(body: Any) -> portfolio_pb2.FlexEvent:
    """{"event_id", "kind": CAP_AT | REDUCE_BY, "kw", "start", "end", "site_ids": [...]}"""
    body = _object(body, "event")
    errors: list[Violation] = []
    kinds = {"CAP_AT": portfolio_pb2.FLEX_KIND_CAP_AT, "REDUCE_BY": portfolio_pb2.FLEX_KIND_REDUCE_BY}
    kind = kinds.get(str(body.get("kind", "")))
    if kind is None:
        errors.append(Violation("event.kind", "must be CAP_AT or REDUCE_BY"))
    kw = _number(body.get("kw"), "event.kw", errors)
    start, end = _time(body.get("start"), "event.start", errors), _time(body.get("end"), "event.end", errors)
    sites = body.get("site_ids") or []
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        errors.append(Violation("event.site_ids", "must be a list of site ids"))
    _raise(errors)
    assert start is not None and end is not None and kw is not None  # no errors
    return portfolio_pb2.FlexEvent(
        event_id=str(body.get("event_id") or ""), kind=kind, kw=kw, start=ts(start), end=ts(end), site_ids=sites
    )
