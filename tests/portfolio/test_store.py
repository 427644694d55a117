import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest

from portfolio.model import Feeder, FlexEvent, FlexKind, FlexState
from portfolio.store import (
    IssuedSchedule,
    PortfolioStore,
    ReportRecord,
    ScheduleState,
    SiteRecord,
    TelemetryRecord,
)
from sitenode.errors import InvalidInput, NotFound

T0 = datetime(2025, 1, 15, 6, 30, 0, 123456, tzinfo=UTC)
M = timedelta(minutes=1)


def event(event_id="ev-1", start=T0, **fields):
    return FlexEvent(event_id=event_id, kind=FlexKind.REDUCE_BY, kw=50, start=start, end=start + 60 * M, **fields)


def test_durability_settings_and_index(tmp_path):
    PortfolioStore(tmp_path / "p.db").close()
    db = sqlite3.connect(tmp_path / "p.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    index = db.execute("SELECT sql FROM sqlite_master WHERE name = 'telemetry_site_seq'").fetchone()[0]
    assert "UNIQUE" in index and "(site_id, seq)" in index
    with PortfolioStore(tmp_path / "p.db") as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_sites_upsert_keeps_first_seen(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        assert store.site("s1") is None and store.sites() == []
        store.touch_site("s1", software_version="0.1", schedule_version="v1", at=T0)
        store.touch_site("s2", software_version="0.1", schedule_version="", at=T0)
        store.touch_site("s1", software_version="0.2", schedule_version="v2", at=T0 + 5 * M)
        assert store.site("s1") == SiteRecord("s1", T0, T0 + 5 * M, "0.2", "v2")
        assert [s.site_id for s in store.sites()] == ["s1", "s2"]


def test_snapshot_keeps_latest(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        assert store.snapshot("s1") is None
        store.save_snapshot("s1", b"\x00old", T0)
        store.save_snapshot("s1", b"\x00new\xff", T0 + M)
        assert store.snapshot("s1") == (b"\x00new\xff", T0 + M)
        assert store.snapshot("s2") is None


def test_times_come_back_exact_and_in_utc(tmp_path):
    plus2 = datetime(2025, 1, 15, 8, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    with PortfolioStore(tmp_path / "p.db") as store:
        store.save_snapshot("s1", b"x", plus2)
        _, at = store.snapshot("s1")
        assert at == T0 and at.tzinfo == UTC and at.microsecond == 123456
        with pytest.raises(InvalidInput):
            store.save_snapshot("s1", b"x", datetime(2025, 1, 15))
        assert store.snapshot("s1") == (b"x", T0)


def test_telemetry_duplicate_seq_refused_and_not_stored_twice(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        assert store.last_telemetry_seq("s1") == 0
        assert store.add_telemetry("s1", 1, T0, b"a")
        assert not store.add_telemetry("s1", 1, T0 + M, b"replayed")
        assert store.add_telemetry("s2", 1, T0, b"other site")
        assert store.telemetry("s1") == [TelemetryRecord("s1", 1, T0, b"a")]
        assert store._db.execute("SELECT COUNT(*) FROM telemetry WHERE site_id = 's1'").fetchone()[0] == 1
        assert store.last_telemetry_seq("s1") == 1


def test_telemetry_batch_counts_only_new_rows(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        assert store.add_telemetry_batch("s1", [(i, T0 + i * M, b"%d" % i) for i in range(1, 6)]) == 5
        # a reconnect replays 4..5 and continues to 8; 8 also appears twice within the batch
        again = [(i, T0 + i * M, b"%d" % i) for i in (4, 5, 6, 7, 8, 8)]
        assert store.add_telemetry_batch("s1", again) == 3
        assert store.add_telemetry_batch("s1", []) == 0
        assert [r.seq for r in store.telemetry("s1")] == list(range(1, 9))
        assert store.last_telemetry_seq("s1") == 8


def test_telemetry_since_and_limit(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        store.add_telemetry_batch("s1", [(i, T0 + i * M, b"p") for i in range(10, 0, -1)])
        page = store.telemetry("s1", since_seq=3, limit=4)
        assert [r.seq for r in page] == [4, 5, 6, 7]
        assert page[0] == TelemetryRecord("s1", 4, T0 + 4 * M, b"p")
        assert store.telemetry("s1", since_seq=10) == []


def test_prune_telemetry(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        store.add_telemetry_batch("s1", [(i, T0 + i * M, b"p") for i in range(1, 6)])
        store.add_telemetry_batch("s2", [(i, T0 + i * M, b"p") for i in range(1, 3)])
        assert store.prune_telemetry(T0 + 3 * M) == 4  # s1 seq 1, 2 and s2 seq 1, 2
        assert [r.seq for r in store.telemetry("s1")] == [3, 4, 5]
        assert store.telemetry("s2") == []
        assert store.last_telemetry_seq("s1") == 5


def test_feeders_replace_by_id_and_delete(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        store.put_feeder(Feeder(feeder_id="f2", site_ids=["s1"], caps_kw=[100, 80.5]))
        store.put_feeder(Feeder(feeder_id="f1", site_ids=["s1", "s2"], cap_kw=300))
        store.put_feeder(Feeder(feeder_id="f1", site_ids=["s3"], cap_kw=250, description="replaced"))
        assert store.feeders() == [
            Feeder(feeder_id="f1", site_ids=["s3"], cap_kw=250, description="replaced"),
            Feeder(feeder_id="f2", site_ids=["s1"], caps_kw=[100, 80.5]),
        ]
        assert store.delete_feeder("f2") and not store.delete_feeder("f2")
        assert [f.feeder_id for f in store.feeders()] == ["f1"]


def test_events_round_trip_and_filter(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        late = event("ev-late", T0 + 120 * M, site_ids=["s1", "s2"])
        early = event("ev-early", T0).model_copy(update={"kind": FlexKind.CAP_AT})
        store.put_event(late)
        store.put_event(early)
        assert store.event("ev-late") == late and store.event("nope") is None
        assert store.events() == [early, late]
        store.put_event(early.model_copy(update={"state": FlexState.CANCELLED}))
        assert store.events(include_cancelled=False) == [late]
        assert [e.event_id for e in store.events()] == ["ev-early", "ev-late"]


def test_cancel_event(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        store.put_event(event())
        cancelled = store.cancel_event("ev-1")
        assert cancelled.state is FlexState.CANCELLED and cancelled.kw == 50
        assert store.event("ev-1") == cancelled
        assert store.cancel_event("ev-1") == cancelled  # idempotent
        assert store.events(include_cancelled=False) == []
        with pytest.raises(NotFound):
            store.cancel_event("unknown")


def test_schedules_issue_ack_and_history(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        store.issue_schedule("s1", "p1", T0, T0 + 60 * M, b"one", T0)
        store.issue_schedule("s1", "p2", T0 + 15 * M, T0 + 75 * M, b"two", T0 + M)
        assert store.ack("s1", "p1", True, "", T0 + 2 * M)
        assert store.ack("s1", "p2", False, "stale", T0 + 3 * M)
        assert not store.ack("s1", "p9", True, "", T0)
        assert not store.ack("s2", "p1", True, "", T0)
        history = store.schedules("s1")
        assert history == [
            IssuedSchedule(
                "s1", "p2", T0 + 15 * M, T0 + 75 * M, b"two", T0 + M, ScheduleState.NACKED, "stale", T0 + 3 * M
            ),
            IssuedSchedule("s1", "p1", T0, T0 + 60 * M, b"one", T0, ScheduleState.ACKED, "", T0 + 2 * M),
        ]
        assert history[0].state == "NACKED"
        assert [s.version for s in store.schedules("s1", limit=1)] == ["p2"]
        assert store.schedules("s2") == []


def test_current_schedule_picks_newest_valid_and_ignores_expired(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        assert store.current_schedule("s1", T0) is None and store.latest_issue() is None
        store.issue_schedule("s1", "long", T0, T0 + 240 * M, b"long", T0)
        store.issue_schedule("s1", "short", T0, T0 + 30 * M, b"short", T0 + M)
        store.issue_schedule("s2", "other", T0, T0 + 480 * M, b"other", T0 + 2 * M)
        assert store.current_schedule("s1", T0 + 10 * M).version == "short"
        assert store.current_schedule("s1", T0 + 30 * M).version == "long"  # valid_until is exclusive
        assert store.current_schedule("s1", T0 + 240 * M) is None
        assert store.latest_issue() == T0 + 2 * M  # to any site
        # issuing a version again makes it the newest, ISSUED again
        store.ack("s1", "long", True, "", T0 + 3 * M)
        store.issue_schedule("s1", "long", T0, T0 + 240 * M, b"long2", T0 + 4 * M)
        assert store.latest_issue() == T0 + 4 * M
        current = store.current_schedule("s1", T0 + 10 * M)
        assert (current.version, current.payload, current.state, current.acked_at) == (
            "long",
            b"long2",
            ScheduleState.ISSUED,
            None,
        )
        assert [s.version for s in store.schedules("s1")] == ["long", "short"]


def test_reports(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        assert store.latest_report() is None and store.reports() == []
        store.save_report("solve-1", T0, '{"n": 1}')
        store.save_report("solve-3", T0 + 2 * M, '{"n": 3}')
        store.save_report("solve-2", T0 + M, '{"n": 2}')
        assert store.report("solve-1") == ReportRecord("solve-1", T0, '{"n": 1}')
        assert store.report("nope") is None
        assert store.latest_report() == ReportRecord("solve-3", T0 + 2 * M, '{"n": 3}')
        assert [r.solve_id for r in store.reports()] == ["solve-3", "solve-2", "solve-1"]
        assert [r.solve_id for r in store.reports(limit=2)] == ["solve-3", "solve-2"]
        store.save_report("solve-1", T0 + 3 * M, '{"n": 1, "again": true}')  # same id: replaced
        assert store.latest_report() == ReportRecord("solve-1", T0 + 3 * M, '{"n": 1, "again": true}')
        assert len(store.reports()) == 3


def test_reopen_keeps_everything(tmp_path):
    path = tmp_path / "sub" / "p.db"
    feeder = Feeder(feeder_id="f1", site_ids=["s1"], cap_kw=100)
    with PortfolioStore(path) as store:
        store.touch_site("s1", software_version="0.1", schedule_version="p1", at=T0)
        store.save_snapshot("s1", b"snap", T0)
        store.add_telemetry_batch("s1", [(1, T0, b"a"), (2, T0 + M, b"b")])
        store.put_feeder(feeder)
        store.put_event(event())
        store.cancel_event("ev-1")
        store.put_event(event("ev-2"))
        store.issue_schedule("s1", "p1", T0, T0 + 60 * M, b"sched", T0)
        store.ack("s1", "p1", True, "ok", T0 + M)
        store.save_report("solve-1", T0, "{}")
    with PortfolioStore(path) as store:
        assert store.site("s1") == SiteRecord("s1", T0, T0, "0.1", "p1")
        assert store.snapshot("s1") == (b"snap", T0)
        assert store.last_telemetry_seq("s1") == 2
        assert not store.add_telemetry("s1", 2, T0, b"b")
        assert store.feeders() == [feeder]
        assert [(e.event_id, e.state) for e in store.events()] == [
            ("ev-1", FlexState.CANCELLED),
            ("ev-2", FlexState.SCHEDULED),
        ]
        assert store.current_schedule("s1", T0 + 5 * M) == IssuedSchedule(
            "s1", "p1", T0, T0 + 60 * M, b"sched", T0, ScheduleState.ACKED, "ok", T0 + M
        )
        assert store.latest_report() == ReportRecord("solve-1", T0, "{}")


def test_failed_write_rolls_back(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        store.add_telemetry("s1", 1, T0, b"a")
        with pytest.raises(InvalidInput):
            store.add_telemetry_batch("s1", [(2, T0, b"b"), (3, datetime(2025, 1, 15), b"naive")])
        # a row sqlite refuses mid-batch, after row 2 went in: the whole batch goes back
        with pytest.raises(sqlite3.ProgrammingError):
            store.add_telemetry_batch("s1", [(2, T0, b"b"), (object(), T0, b"bad seq")])
        assert store.last_telemetry_seq("s1") == 1
        assert store.add_telemetry("s1", 2, T0, b"b")  # the connection is usable, no transaction left open


def test_close_is_idempotent(tmp_path):
    store = PortfolioStore(tmp_path / "p.db")
    store.close()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.sites()


def test_many_schedules_in_chunked_statements_replace_as_one_by_one_would(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        store._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)  # noqa: SLF001 - two rows per statement
        store.issue_schedule("s3", "p1", T0, T0 + 60 * M, b"old", T0)
        store.ack("s3", "p1", True, "", T0 + M)
        items = [(f"s{i}", "p1", T0, T0 + 60 * M, f"new-{i}".encode()) for i in range(5)]
        store.issue_schedules([*items, ("s4", "p1", T0, T0 + 60 * M, b"later")], T0 + 2 * M)  # s4 twice: the later one
        for i in range(5):
            (held,) = store.schedules(f"s{i}")
            assert (held.payload, held.state, held.issued_at) == (
                b"later" if i == 4 else f"new-{i}".encode(),
                ScheduleState.ISSUED,
                T0 + 2 * M,
            )


def test_last_acked_is_the_newest_accepted_schedule_per_site_read_off_the_index(tmp_path):
    with PortfolioStore(tmp_path / "p.db") as store:
        assert store.last_acked(["s1"]) == {}
        store.issue_schedule("s1", "v1", T0, T0 + 60 * M, b"one", T0)
        store.issue_schedule("s1", "v2", T0, T0 + 60 * M, b"two", T0 + M)
        store.issue_schedule("s1", "v3", T0, T0 + 60 * M, b"three", T0 + 2 * M)
        store.issue_schedule("s2", "w1", T0, T0 + 60 * M, b"w", T0)
        assert store.last_acked(["s1", "s2"]) == {}  # issued, never acked
        store.ack("s1", "v1", True, "", T0 + 3 * M)
        store.ack("s1", "v2", True, "", T0 + 4 * M)
        store.ack("s1", "v3", False, "does not fit", T0 + 5 * M)  # refused: the node keeps v2
        store.ack("s2", "w1", True, "", T0 + 3 * M)
        held = store.last_acked(["s1", "s2", "never", "s1"])
        assert {k: (v.version, v.payload) for k, v in held.items()} == {"s1": ("v2", b"two"), "s2": ("w1", b"w")}
        assert store.schedule("s1", "v3").state is ScheduleState.NACKED and store.schedule("s1", "nope") is None
        plan = store._db.execute(
            "EXPLAIN QUERY PLAN SELECT version FROM schedules INDEXED BY schedules_site"
            " WHERE site_id = ? AND state = ? ORDER BY issued_at DESC, id DESC LIMIT 1",
            ("s1", "ACKED"),
        ).fetchall()
        detail = " ".join(str(row[-1]) for row in plan)
        assert "USING INDEX schedules_site" in detail and "TEMP B-TREE" not in detail
