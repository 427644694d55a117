"""The push's spell: the collector paused while schedules go out, ended by the last ack or by
the quiet timeout, a later push taking over, and which sites' schedules are still coming."""

from __future__ import annotations

import gc
import time

import pytest

from services.push_window import PushWindow


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_the_last_ack_ends_the_spell_and_the_collector_runs_again():
    window = PushWindow(quiet_seconds=30)
    push = window.begin({"north", "south"})
    assert window.open and not gc.isenabled()
    assert window.coming("north") and window.coming("south")
    window.delivered("north")
    assert not window.coming("north") and window.coming("south")
    window.sent(push, "pf-1", {"north", "south"})
    assert not window.coming("south")  # not sent by now: not coming, so pongs again
    window.acked("north", "pf-0")  # another version's ack counts for nothing
    window.acked("north", "pf-1")
    assert window.open and not gc.isenabled()
    window.acked("south", "pf-1")
    assert not window.open and gc.isenabled()


def test_missing_acks_end_the_spell_after_the_quiet_time():
    window = PushWindow(quiet_seconds=0.2)
    push = window.begin({"north"})
    window.sent(push, "pf-1", {"north"})
    deadline = time.monotonic() + 5
    while window.open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not window.open and gc.isenabled()


def test_nothing_sent_ends_the_spell_at_once():
    window = PushWindow(quiet_seconds=30)
    window.sent(window.begin({"north"}), "pf-1", set())
    assert not window.open and gc.isenabled()


def test_a_later_push_takes_over_and_the_earlier_timer_leaves_it_be():
    window = PushWindow(quiet_seconds=0.1)
    first = window.begin({"north"})
    window.sent(first, "pf-1", {"north"})
    second = window.begin({"south"})  # the next solve's solver returned before the first's acks
    window.sent(first, "pf-1", {"north"})  # late word of the first push changes nothing
    time.sleep(0.3)  # the first push's timer is long past
    assert window.open and not gc.isenabled() and window.coming("south")
    window.sent(second, "pf-2", {"south"})
    window.acked("south", "pf-2")
    assert not window.open and gc.isenabled()


def test_a_collector_switched_off_before_stays_off():
    gc.disable()
    window = PushWindow(quiet_seconds=30)
    window.sent(window.begin({"north"}), "pf-1", set())
    assert not window.open and not gc.isenabled()
