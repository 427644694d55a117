"""The node's own heartbeat rule, as pure logic (the stream itself: test_portfolio_link)."""

from services.link_client import ping_due


def test_a_node_pings_after_two_silent_intervals_not_before():
    # interval 1 s, timeout 3 s: the portfolio's pings come at most 1.5 intervals apart
    assert not ping_due(now=101.9, heard=100.0, last_ping=0.0, interval=1.0, timeout=3.0)
    assert ping_due(now=102.0, heard=100.0, last_ping=0.0, interval=1.0, timeout=3.0)


def test_a_node_pings_at_most_once_an_interval():
    assert not ping_due(now=102.5, heard=100.0, last_ping=102.0, interval=1.0, timeout=3.0)
    assert ping_due(now=103.0, heard=100.0, last_ping=102.0, interval=1.0, timeout=3.0)


def test_a_short_timeout_brings_the_ping_forward_so_an_answer_can_come_in_time():
    # timeout 1.5 s: waiting two intervals would give up before asking; one interval is left for the answer
    assert ping_due(now=100.5, heard=100.0, last_ping=0.0, interval=1.0, timeout=1.5)
    assert not ping_due(now=100.4, heard=100.0, last_ping=0.0, interval=1.0, timeout=1.5)
