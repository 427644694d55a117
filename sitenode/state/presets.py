"""The asset lifecycles: Layer 4's OCPP-aligned charger, and the battery.

Charger (shared/seeds/002): seven states, ten triggers.

    AVAILABLE --plug_in--> PREPARING --start_charge--> CHARGING --complete--> FINISHING
        ^                   |   ^ suspend               | ^                      |
        |                   v   |                       v | resume               |
        +----unplug----- SUSPENDED <------suspend------ CHARGING                 |
        +<----------------------------------unplug-------------------------------+
    any state but FAULTED --fault--> FAULTED --reset--> AVAILABLE
    AVAILABLE, FAULTED --disable--> UNAVAILABLE --enable--> AVAILABLE

Choices where the seed is silent: a vehicle may be unplugged while preparing or
suspended; `complete` is allowed from SUSPENDED (the EV is full while paused); an
operator may take a faulted charger out of service; a charger that is charging must
finish before it is disabled (OCPP's ChangeAvailability is then "scheduled").

Battery: IDLE, CHARGING, DISCHARGING, FAULTED, UNAVAILABLE. `disable` works from every
working state, because stale telemetry must move a battery to UNAVAILABLE whatever
it was doing.
"""

from __future__ import annotations

from enum import StrEnum

from sitenode.state.fsm import MachineSpec, Transition


class ChargerState(StrEnum):
    AVAILABLE = "AVAILABLE"
    PREPARING = "PREPARING"
    CHARGING = "CHARGING"
    SUSPENDED = "SUSPENDED"
    FINISHING = "FINISHING"
    FAULTED = "FAULTED"
    UNAVAILABLE = "UNAVAILABLE"


class BatteryState(StrEnum):
    IDLE = "IDLE"
    CHARGING = "CHARGING"
    DISCHARGING = "DISCHARGING"
    FAULTED = "FAULTED"
    UNAVAILABLE = "UNAVAILABLE"


C = ChargerState
_CHARGER = [
    ("plug_in", C.AVAILABLE, C.PREPARING),
    ("start_charge", C.PREPARING, C.CHARGING),
    ("suspend", C.CHARGING, C.SUSPENDED),
    ("suspend", C.PREPARING, C.SUSPENDED),
    ("resume", C.SUSPENDED, C.CHARGING),
    ("complete", C.CHARGING, C.FINISHING),
    ("complete", C.SUSPENDED, C.FINISHING),
    ("unplug", C.PREPARING, C.AVAILABLE),
    ("unplug", C.SUSPENDED, C.AVAILABLE),
    ("unplug", C.FINISHING, C.AVAILABLE),
    *(("fault", s, C.FAULTED) for s in C if s is not C.FAULTED),
    ("reset", C.FAULTED, C.AVAILABLE),
    ("disable", C.AVAILABLE, C.UNAVAILABLE),
    ("disable", C.FAULTED, C.UNAVAILABLE),
    ("enable", C.UNAVAILABLE, C.AVAILABLE),
]

CHARGER = MachineSpec(
    name="charger",
    states=tuple(C),
    initial=C.AVAILABLE,
    transitions=tuple(Transition(trigger, src, dst) for trigger, src, dst in _CHARGER),
)

B = BatteryState
_BATTERY = [
    ("charge", B.IDLE, B.CHARGING),
    ("charge", B.DISCHARGING, B.CHARGING),
    ("discharge", B.IDLE, B.DISCHARGING),
    ("discharge", B.CHARGING, B.DISCHARGING),
    ("stop", B.CHARGING, B.IDLE),
    ("stop", B.DISCHARGING, B.IDLE),
    *(("fault", s, B.FAULTED) for s in B if s is not B.FAULTED),
    ("reset", B.FAULTED, B.IDLE),
    *(("disable", s, B.UNAVAILABLE) for s in B if s is not B.UNAVAILABLE),
    ("enable", B.UNAVAILABLE, B.IDLE),
]

BATTERY = MachineSpec(
    name="battery",
    states=tuple(B),
    initial=B.IDLE,
    transitions=tuple(Transition(trigger, src, dst) for trigger, src, dst in _BATTERY),
)

#: states in which commands to the asset are held, not sent
HOLD_STATES = frozenset({C.FAULTED.value, C.UNAVAILABLE.value, B.FAULTED.value, B.UNAVAILABLE.value})
