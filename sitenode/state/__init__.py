"""Asset state machines: a generic FSM with guards and the charger and battery presets."""

from sitenode.state.fsm import MachineSpec, StateChange, StateMachine, Transition
from sitenode.state.presets import BATTERY, CHARGER, HOLD_STATES, BatteryState, ChargerState

__all__ = [
    "BATTERY",
    "CHARGER",
    "HOLD_STATES",
    "BatteryState",
    "ChargerState",
    "MachineSpec",
    "StateChange",
    "StateMachine",
    "Transition",
]
