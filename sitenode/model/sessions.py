"""EV charging sessions, as `sessions.csv` lists them. Times are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, Field, field_validator, model_validator

from sitenode.errors import FieldViolation, InvalidInput
from sitenode.model.site import Id, NonNeg, Pos, SiteConfig, Strict


class EVSession(Strict):
    """A vehicle that needs `energy_kwh` between `arrival` and `departure`.

    `priority` 1 is most urgent: shortfall is weighted by 1/priority (times the fleet
    class's weight, `sitenode.optimizer.formulation`) when not all sessions can be served.
    Without `charger_id` the optimizer assigns a charger.
    """

    session_id: Id
    arrival: AwareDatetime
    departure: AwareDatetime
    energy_kwh: NonNeg
    max_kw: Pos
    priority: Annotated[int, Field(ge=1, le=100)] = 1
    charger_id: Id | None = None

    @field_validator("arrival", "departure")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> EVSession:
        if self.departure <= self.arrival:
            raise InvalidInput.one(
                "departure",
                f"must be after arrival ({self.arrival.isoformat()}), got {self.departure.isoformat()}",
            )
        return self


def check_sessions(
    site: SiteConfig, sessions: list[EVSession], prefix: str = "sessions", *, indexed: bool = True
) -> None:
    """Cross-checks against the site: known chargers, unique ids. Paths are
    `sessions[i].field`, or `prefix.field` for a lone session with `indexed` false."""
    v: list[FieldViolation] = []
    ids: set[str] = set()
    known = {c.id for c in site.chargers}
    for i, s in enumerate(sessions):
        at = f"{prefix}[{i}]" if indexed else prefix
        if s.session_id in ids:
            v.append(FieldViolation(f"{at}.session_id", f"duplicates an earlier session, got {s.session_id!r}"))
        ids.add(s.session_id)
        if s.charger_id is not None and s.charger_id not in known:
            v.append(
                FieldViolation(
                    f"{at}.charger_id",
                    f"must name a charger of site {site.site_id!r} ({', '.join(sorted(known)) or 'none'}), "
                    f"got {s.charger_id!r}",
                )
            )
    if v:
        raise InvalidInput(v)
