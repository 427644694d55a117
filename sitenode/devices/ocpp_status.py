"""OCPP connector statuses onto the charger state machine (pure).

A charger reports where it is, not how it got there; after a missed notification the
node walks the shortest legal path of triggers to the reported state, so every step is
still a transition the table allows (and each is reported as an event).
"""

from __future__ import annotations

from collections import deque

from sitenode.state import CHARGER, ChargerState, MachineSpec

C = ChargerState
OCPP_TO_STATE = {
    "Available": C.AVAILABLE,
    "Preparing": C.PREPARING,
    "Charging": C.CHARGING,
    "SuspendedEV": C.SUSPENDED,
    "SuspendedEVSE": C.SUSPENDED,
    "Finishing": C.FINISHING,
    "Faulted": C.FAULTED,
    "Unavailable": C.UNAVAILABLE,
    "Reserved": C.AVAILABLE,
    "Occupied": C.PREPARING,  # OCPP 2.0.1's single "plugged in" status
}


def path_to(current: str, target: str, spec: MachineSpec = CHARGER) -> list[str] | None:
    """Shortest list of triggers from `current` to `target`; [] when there; None when unreachable."""
    if current == target:
        return []
    seen = {current}
    queue: deque[tuple[str, list[str]]] = deque([(current, [])])
    while queue:
        state, triggers = queue.popleft()
        for t in spec.transitions:
            if t.source == state and t.dest not in seen:
                if t.dest == target:
                    return [*triggers, t.trigger]
                seen.add(t.dest)
                queue.append((t.dest, [*triggers, t.trigger]))
    return None
