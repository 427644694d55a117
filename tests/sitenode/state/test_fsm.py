"""The transition tables, exhaustively: every (state, trigger) pair does what the table says."""

import pytest

from sitenode.errors import TransitionRefused
from sitenode.state import BATTERY, CHARGER, ChargerState, MachineSpec, StateMachine, Transition

C = ChargerState
# (state, trigger) -> destination; every pair not listed must be refused
CHARGER_EXPECTED = {
    (C.AVAILABLE, "plug_in"): C.PREPARING,
    (C.PREPARING, "start_charge"): C.CHARGING,
    (C.PREPARING, "suspend"): C.SUSPENDED,
    (C.PREPARING, "unplug"): C.AVAILABLE,
    (C.CHARGING, "suspend"): C.SUSPENDED,
    (C.CHARGING, "complete"): C.FINISHING,
    (C.SUSPENDED, "resume"): C.CHARGING,
    (C.SUSPENDED, "complete"): C.FINISHING,
    (C.SUSPENDED, "unplug"): C.AVAILABLE,
    (C.FINISHING, "unplug"): C.AVAILABLE,
    (C.FAULTED, "reset"): C.AVAILABLE,
    (C.AVAILABLE, "disable"): C.UNAVAILABLE,
    (C.FAULTED, "disable"): C.UNAVAILABLE,
    (C.UNAVAILABLE, "enable"): C.AVAILABLE,
    **{(s, "fault"): C.FAULTED for s in C if s is not C.FAULTED},
}
TRIGGERS = ("plug_in", "start_charge", "suspend", "resume", "complete", "unplug", "fault", "reset", "disable", "enable")


def test_charger_has_seven_states_and_ten_triggers():
    assert len(CHARGER.states) == 7
    assert set(CHARGER.triggers) == set(TRIGGERS)


@pytest.mark.parametrize("state", list(C))
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_charger_table(state, trigger):
    fsm = StateMachine(CHARGER, "cp-1", state)
    expected = CHARGER_EXPECTED.get((state, trigger))
    if expected is None:
        with pytest.raises(TransitionRefused) as exc:
            fsm.fire(trigger)
        assert fsm.state == state  # refused, never applied
        assert exc.value.state == state and exc.value.trigger == trigger
        assert not fsm.can(trigger)
    else:
        change = fsm.fire(trigger)
        assert (change.from_state, change.to_state, fsm.state) == (state, expected, expected)


BATTERY_EXPECTED = {
    ("IDLE", "charge"): "CHARGING",
    ("DISCHARGING", "charge"): "CHARGING",
    ("IDLE", "discharge"): "DISCHARGING",
    ("CHARGING", "discharge"): "DISCHARGING",
    ("CHARGING", "stop"): "IDLE",
    ("DISCHARGING", "stop"): "IDLE",
    ("IDLE", "fault"): "FAULTED",
    ("CHARGING", "fault"): "FAULTED",
    ("DISCHARGING", "fault"): "FAULTED",
    ("UNAVAILABLE", "fault"): "FAULTED",
    ("FAULTED", "reset"): "IDLE",
    ("IDLE", "disable"): "UNAVAILABLE",
    ("CHARGING", "disable"): "UNAVAILABLE",
    ("DISCHARGING", "disable"): "UNAVAILABLE",
    ("FAULTED", "disable"): "UNAVAILABLE",
    ("UNAVAILABLE", "enable"): "IDLE",
}


@pytest.mark.parametrize("state", list(BATTERY.states))
@pytest.mark.parametrize("trigger", list(BATTERY.triggers) + ["plug_in"])
def test_battery_table(state, trigger):
    fsm = StateMachine(BATTERY, "bat", state)
    expected = BATTERY_EXPECTED.get((state, trigger))
    if expected is None:
        with pytest.raises(TransitionRefused):
            fsm.fire(trigger)
        assert fsm.state == state
    else:
        assert fsm.fire(trigger).to_state == expected


def test_guards_refuse_with_their_reason():
    spec = MachineSpec(
        "door",
        ("shut", "open"),
        "shut",
        (
            Transition(
                "open", "shut", "open", guard=lambda ctx: ctx.get("authorized", False), guard_says="not authorized"
            ),
            Transition("close", "open", "shut"),
        ),
    )
    fsm = StateMachine(spec, "d1")
    with pytest.raises(TransitionRefused, match="not authorized"):
        fsm.fire("open", {"authorized": False})
    assert fsm.state == "shut"
    assert fsm.fire("open", {"authorized": True}).to_state == "open"


def test_bad_tables_are_refused_when_defined():
    with pytest.raises(ValueError, match="two destinations"):
        MachineSpec("x", ("a", "b"), "a", (Transition("go", "a", "b"), Transition("go", "a", "a")))
    with pytest.raises(ValueError, match="unknown state"):
        MachineSpec("x", ("a",), "a", (Transition("go", "a", "z"),))
