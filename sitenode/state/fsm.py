"""A small finite-state machine with guards, for asset lifecycles.

A `MachineSpec` is the transition table, checked once when defined: every state named
is declared, and a (trigger, source) pair has at most one destination. A
`StateMachine` is one asset's instance of it. A refused trigger raises
`TransitionRefused` and leaves the state as it was: illegal transitions are reported,
never applied. Pure: no clock (the caller passes the time), no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sitenode.errors import TransitionRefused

Guard = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Transition:
    trigger: str
    source: str
    dest: str
    guard: Guard | None = None
    guard_says: str = ""  # why the guard refuses, in words, for the report


@dataclass(frozen=True)
class MachineSpec:
    name: str
    states: tuple[str, ...]
    initial: str
    transitions: tuple[Transition, ...]
    _table: dict[tuple[str, str], Transition] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        known = set(self.states)
        if self.initial not in known:
            raise ValueError(f"{self.name}: initial state {self.initial!r} is not a state")
        for t in self.transitions:
            if t.source not in known or t.dest not in known:
                raise ValueError(f"{self.name}: {t.trigger} {t.source}->{t.dest} names an unknown state")
            if (t.trigger, t.source) in self._table:
                raise ValueError(f"{self.name}: {t.trigger!r} from {t.source} has two destinations")
            self._table[(t.trigger, t.source)] = t

    @property
    def triggers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))

    def find(self, trigger: str, source: str) -> Transition | None:
        return self._table.get((trigger, source))


@dataclass(frozen=True)
class StateChange:
    asset_id: str
    machine: str
    trigger: str
    from_state: str
    to_state: str
    at: datetime | None


class StateMachine:
    def __init__(self, spec: MachineSpec, asset_id: str, state: str | None = None) -> None:
        if state is not None and state not in spec.states:
            raise ValueError(f"{spec.name}: unknown state {state!r}")
        self.spec, self.asset_id = spec, asset_id
        self.state = state or spec.initial

    def _check(self, trigger: str, context: Mapping[str, Any]) -> Transition:
        if trigger not in self.spec.triggers:
            raise TransitionRefused(self.spec.name, self.asset_id, self.state, trigger, "unknown trigger")
        t = self.spec.find(trigger, self.state)
        if t is None:
            raise TransitionRefused(self.spec.name, self.asset_id, self.state, trigger, "not allowed from this state")
        if t.guard is not None and not t.guard(context):
            raise TransitionRefused(self.spec.name, self.asset_id, self.state, trigger, t.guard_says or "guard refused")
        return t

    def can(self, trigger: str, context: Mapping[str, Any] | None = None) -> bool:
        try:
            self._check(trigger, context or {})
        except TransitionRefused:
            return False
        return True

    def fire(self, trigger: str, context: Mapping[str, Any] | None = None, at: datetime | None = None) -> StateChange:
        t = self._check(trigger, context or {})
        change = StateChange(self.asset_id, self.spec.name, trigger, self.state, t.dest, at)
        self.state = t.dest
        return change
