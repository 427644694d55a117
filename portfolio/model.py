"""What operators give the portfolio: feeders and flex events (pydantic, validated once).

A *feeder* groups sites under one import cap: the sum of the sites' net import
(import − export, what the transformer carries) stays at or below the cap at every step.
The cap is one constant, or one value per step of the portfolio horizon (`caps_kw`).

A *flex event* asks the sites it names (all connected sites when empty) for one of two
things during [start, end):

* ``REDUCE_BY``: aggregate import at least `kw` below the sites' *baseline*, the import
  each site plans when it optimizes alone (without feeders or events);
* ``CAP_AT``: aggregate import at most `kw`.

Relaxation order in the coupled solve (shared/BUNDLE.md's order, extended): a feeder cap
is physical and ranks with the site's own hard limit ("over"); a flex event target is
commercial and gives way after EV energy and breach ("flex"), before cost.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, field_validator, model_validator

from sitenode.errors import InvalidInput
from sitenode.model.run import Objective, Priorities
from sitenode.model.site import Id, Strict

NonNegKw = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Feeder(Strict):
    feeder_id: Id
    site_ids: list[Id] = Field(min_length=1)
    cap_kw: NonNegKw | None = None
    caps_kw: list[NonNegKw] | None = None  # per step of the portfolio horizon, from its start
    description: str = Field(default="", max_length=200)

    @field_validator("site_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for s in value:
            if s in seen:
                raise ValueError(f"lists {s!r} twice")
            seen.add(s)
        return value

    @model_validator(mode="after")
    def _one_cap(self) -> Feeder:
        if (self.cap_kw is None) == (self.caps_kw is None):
            raise InvalidInput.one("cap_kw", "give exactly one of cap_kw (constant) and caps_kw (per step)")
        if self.caps_kw is not None and not self.caps_kw:
            raise InvalidInput.one("caps_kw", "must not be empty")
        return self

    def cap_at(self, step: int) -> float:
        """The cap at one step; a per-step list shorter than the horizon repeats its last value."""
        if self.cap_kw is not None:
            return self.cap_kw
        assert self.caps_kw is not None
        return self.caps_kw[min(step, len(self.caps_kw) - 1)]


class FlexKind(StrEnum):
    REDUCE_BY = "REDUCE_BY"
    CAP_AT = "CAP_AT"


class FlexState(StrEnum):
    SCHEDULED = "SCHEDULED"
    CANCELLED = "CANCELLED"


class FlexEvent(Strict):
    event_id: Id
    kind: FlexKind
    kw: NonNegKw
    start: AwareDatetime
    end: AwareDatetime
    site_ids: list[Id] = Field(default_factory=list)  # empty: every connected site
    state: FlexState = FlexState.SCHEDULED

    @model_validator(mode="after")
    def _window(self) -> FlexEvent:
        if self.end <= self.start:
            raise InvalidInput.one("end", f"must be after start ({self.start.isoformat()}), got {self.end.isoformat()}")
        return self

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


class SiteSettings(Strict):
    """An operator's choice of a site's objective weights and priorities, kept by the
    portfolio and passed to the node; unset parts leave the node's own configuration."""

    weights: Objective | None = None
    priorities: Priorities | None = None
    updated_at: AwareDatetime | None = None
