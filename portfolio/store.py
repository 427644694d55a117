"""The portfolio's memory: sites, operator input, issued schedules and reports in one SQLite file (WAL).

A portfolio restart loses nothing an operator gave it (feeders, flex events) and resumes
pushing what is in force: `current_schedule` is what to resend to a site that reconnects.
Telemetry carries the site's own sequence numbers, so a reconnect that replays part of the
stream stores no duplicate, and `last_telemetry_seq` tells the site where to resume.

Like the node's journal: one connection, schema created on open, every write in one
`BEGIN IMMEDIATE` transaction with `synchronous=FULL`; batches share a transaction, which is
what keeps ingestion fast. A lock serializes all use of the connection, so any thread may
call in. Times go in timezone-aware (naive ones are refused) and come back in UTC, stored as
fixed-width ISO strings (microseconds always written), so they sort as text and round-trip exactly.
Payloads (serialized protobuf, report JSON) are opaque: the store never parses them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from portfolio.model import Feeder, FlexEvent, FlexState, SiteSettings
from sitenode.errors import InvalidInput, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (
    site_id TEXT PRIMARY KEY, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    software_version TEXT NOT NULL, schedule_version_held TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (site_id TEXT PRIMARY KEY, at TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry (
    site_id TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL, payload BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS telemetry_site_seq ON telemetry(site_id, seq);
CREATE TABLE IF NOT EXISTS feeders (feeder_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS site_settings (site_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, start TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (
    id INTEGER PRIMARY KEY, site_id TEXT NOT NULL, version TEXT NOT NULL,
    valid_from TEXT NOT NULL, valid_until TEXT NOT NULL, payload BLOB NOT NULL, issued_at TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL, acked_at TEXT, UNIQUE (site_id, version));
CREATE INDEX IF NOT EXISTS schedules_site ON schedules(site_id, issued_at, id);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY, solve_id TEXT NOT NULL UNIQUE, at TEXT NOT NULL, payload TEXT NOT NULL);
"""


class ScheduleState(StrEnum):
    ISSUED = "ISSUED"
    ACKED = "ACKED"
    NACKED = "NACKED"


@dataclass(frozen=True)
class SiteRecord:
    site_id: str
    first_seen: datetime
    last_seen: datetime
    software_version: str
    schedule_version_held: str


@dataclass(frozen=True)
class TelemetryRecord:
    site_id: str
    seq: int
    at: datetime
    payload: bytes


@dataclass(frozen=True)
class IssuedSchedule:
    site_id: str
    version: str
    valid_from: datetime
    valid_until: datetime
    payload: bytes
    issued_at: datetime
    state: ScheduleState
    reason: str
    acked_at: datetime | None


@dataclass(frozen=True)
class ReportRecord:
    solve_id: str
    at: datetime
    payload: str


def _ts(value: datetime, field: str = "at") -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput.one(field, f"must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


_SCHEDULE_COLUMNS = "site_id, version, valid_from, valid_until, payload, issued_at, state, reason, acked_at"


def _schedule(row: tuple) -> IssuedSchedule:
    return IssuedSchedule(
        row[0],
        row[1],
        _dt(row[2]),
        _dt(row[3]),
        bytes(row[4]),
        _dt(row[5]),
        ScheduleState(row[6]),
        row[7],
        None if row[8] is None else _dt(row[8]),
    )


def _report(row: tuple) -> ReportRecord:
    return ReportRecord(row[0], _dt(row[1]), row[2])


class PortfolioStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> PortfolioStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple = ()) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    # -- sites --------------------------------------------------------------------------
    def touch_site(self, site_id: str, *, software_version: str, schedule_version: str, at: datetime) -> None:
        """Record that a site was seen now; the first sighting is kept."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO sites VALUES (?,?,?,?,?) ON CONFLICT(site_id) DO UPDATE SET"
                " last_seen = excluded.last_seen, software_version = excluded.software_version,"
                " schedule_version_held = excluded.schedule_version_held",
                (site_id, _ts(at), _ts(at), software_version, schedule_version),
            )

    def sites(self) -> list[SiteRecord]:
        rows = self._all("SELECT * FROM sites ORDER BY site_id")
        return [SiteRecord(r[0], _dt(r[1]), _dt(r[2]), r[3], r[4]) for r in rows]

    def site(self, site_id: str) -> SiteRecord | None:
        r = self._one("SELECT * FROM sites WHERE site_id = ?", (site_id,))
        return None if r is None else SiteRecord(r[0], _dt(r[1]), _dt(r[2]), r[3], r[4])

    # -- latest snapshot per site ------------------------------------------------------------
    def save_snapshot(self, site_id: str, payload: bytes, at: datetime) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?,?,?)", (site_id, _ts(at), bytes(payload)))

    def snapshot(self, site_id: str) -> tuple[bytes, datetime] | None:
        r = self._one("SELECT payload, at FROM snapshots WHERE site_id = ?", (site_id,))
        return None if r is None else (bytes(r[0]), _dt(r[1]))

    # -- operators' settings per site ----------------------------------------------------------
    def put_settings(self, site_id: str, settings: SiteSettings) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO site_settings VALUES (?,?)", (site_id, settings.model_dump_json()))

    def settings(self, site_id: str) -> SiteSettings | None:
        r = self._one("SELECT body FROM site_settings WHERE site_id = ?", (site_id,))
        return None if r is None else SiteSettings.model_validate_json(r[0])

    # -- telemetry --------------------------------------------------------------------------
    def add_telemetry(self, site_id: str, seq: int, at: datetime, payload: bytes) -> bool:
        """Store one sample; False (and nothing stored) when the site already sent this seq."""
        with self._tx() as db:
            return (
                db.execute(
                    "INSERT OR IGNORE INTO telemetry VALUES (?,?,?,?)", (site_id, seq, _ts(at), bytes(payload))
                ).rowcount
                == 1
            )

    def add_telemetry_batch(self, site_id: str, items: Iterable[tuple[int, datetime, bytes]]) -> int:
        """Store (seq, at, payload) samples in one transaction; returns how many were new."""
        rows = [(site_id, seq, _ts(at), bytes(payload)) for seq, at, payload in items]
        if not rows:
            return 0
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO telemetry VALUES (?,?,?,?)", rows)
            return db.total_changes - before

    def add_telemetry_many(self, batches: Mapping[str, Iterable[tuple[int, datetime, bytes]]]) -> dict[str, int]:
        """Samples of many sites in one transaction (one disk sync for all); per site, how many were new."""
        return self.write_many(batches, ())[0]

    def write_many(
        self,
        batches: Mapping[str, Iterable[tuple[int, datetime, bytes]]],
        acks: Sequence[tuple[str, str, bool, str, datetime]],
        snapshots: Mapping[str, tuple[bytes, datetime]] | None = None,
    ) -> tuple[dict[str, int], list[bool]]:
        """`add_telemetry_many`, `ack_many` and `save_snapshot` per site in one transaction (one disk
        sync): what a stream hub gathers between two writes. Returns what the first two return."""
        new: dict[str, int] = {}
        snapshot_rows = [(site_id, _ts(at), bytes(payload)) for site_id, (payload, at) in (snapshots or {}).items()]
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO snapshots VALUES (?,?,?)", snapshot_rows)
            for site_id, items in batches.items():
                rows = [(site_id, seq, _ts(at), bytes(payload)) for seq, at, payload in items]
                before = db.total_changes
                db.executemany("INSERT OR IGNORE INTO telemetry VALUES (?,?,?,?)", rows)
                new[site_id] = db.total_changes - before
            matched = self._ack_rows(db, acks)
        return new, matched

    def last_telemetry_seq(self, site_id: str) -> int:
        r = self._one("SELECT MAX(seq) FROM telemetry WHERE site_id = ?", (site_id,))
        return 0 if r is None or r[0] is None else r[0]

    def telemetry(self, site_id: str, since_seq: int = 0, limit: int = 1000) -> list[TelemetryRecord]:
        """Samples with seq > since_seq, in seq order, at most `limit`."""
        rows = self._all(
            "SELECT site_id, seq, at, payload FROM telemetry WHERE site_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (site_id, since_seq, limit),
        )
        return [TelemetryRecord(r[0], r[1], _dt(r[2]), bytes(r[3])) for r in rows]

    def telemetry_since(
        self, site_id: str, start: datetime, since_seq: int = 0, limit: int = 1000
    ) -> list[TelemetryRecord]:
        """Samples taken at or after `start` with seq > since_seq, in seq order, at most `limit`
        (a reader that keeps the last seq it read pays only for what is new)."""
        rows = self._all(
            "SELECT site_id, seq, at, payload FROM telemetry"
            " WHERE site_id = ? AND seq > ? AND at >= ? ORDER BY seq LIMIT ?",
            (site_id, since_seq, _ts(start, "start"), limit),
        )
        return [TelemetryRecord(r[0], r[1], _dt(r[2]), bytes(r[3])) for r in rows]

    def prune_telemetry(self, before: datetime) -> int:
        """Drop samples taken before `before` (every site); returns how many."""
        with self._tx() as db:
            return db.execute("DELETE FROM telemetry WHERE at < ?", (_ts(before, "before"),)).rowcount

    # -- feeders ------------------------------------------------------------------------------
    def put_feeder(self, feeder: Feeder) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO feeders VALUES (?,?)", (feeder.feeder_id, feeder.model_dump_json()))

    def delete_feeder(self, feeder_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM feeders WHERE feeder_id = ?", (feeder_id,)).rowcount == 1

    def feeders(self) -> list[Feeder]:
        return [Feeder.model_validate_json(r[0]) for r in self._all("SELECT body FROM feeders ORDER BY feeder_id")]

    # -- flex events ------------------------------------------------------------------------------
    def put_event(self, event: FlexEvent) -> None:
        with self._tx() as db:
            self._write_event(db, event)

    @staticmethod
    def _write_event(db: sqlite3.Connection, event: FlexEvent) -> None:
        db.execute(
            "INSERT OR REPLACE INTO events VALUES (?,?,?,?)",
            (event.event_id, _ts(event.start, "start"), str(event.state), event.model_dump_json()),
        )

    def event(self, event_id: str) -> FlexEvent | None:
        r = self._one("SELECT body FROM events WHERE event_id = ?", (event_id,))
        return None if r is None else FlexEvent.model_validate_json(r[0])

    def events(self, include_cancelled: bool = True) -> list[FlexEvent]:
        """Events by start time (then id)."""
        where = "" if include_cancelled else "WHERE state != 'CANCELLED'"
        return [
            FlexEvent.model_validate_json(r[0])
            for r in self._all(f"SELECT body FROM events {where} ORDER BY start, event_id")
        ]

    def cancel_event(self, event_id: str) -> FlexEvent:
        """Mark an event cancelled and return it; an event already cancelled comes back as is."""
        with self._tx() as db:
            r = db.execute("SELECT body FROM events WHERE event_id = ?", (event_id,)).fetchone()
            if r is None:
                raise NotFound(f"no flex event {event_id!r}")
            event = FlexEvent.model_validate_json(r[0])
            if event.state is FlexState.CANCELLED:
                return event
            cancelled = event.model_copy(update={"state": FlexState.CANCELLED})
            self._write_event(db, cancelled)
            return cancelled

    # -- issued schedules ---------------------------------------------------------------------------
    def issue_schedule(
        self, site_id: str, version: str, valid_from: datetime, valid_until: datetime, payload: bytes, at: datetime
    ) -> None:
        """Record a schedule sent to a site. Issuing a version again replaces it: it becomes the
        newest, ISSUED again."""
        with self._tx() as db:
            db.execute("DELETE FROM schedules WHERE site_id = ? AND version = ?", (site_id, version))
            db.execute(
                f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) VALUES (?,?,?,?,?,?,?,'',NULL)",
                (
                    site_id,
                    version,
                    _ts(valid_from, "valid_from"),
                    _ts(valid_until, "valid_until"),
                    bytes(payload),
                    _ts(at),
                    str(ScheduleState.ISSUED),
                ),
            )

    def issue_schedules(self, items: Sequence[tuple[str, str, datetime, datetime, bytes]], at: datetime) -> None:
        """Many (site_id, version, valid_from, valid_until, payload) at once, as `issue_schedule`
        each, in one transaction."""
        latest: dict[tuple[str, str], tuple] = {}
        issued_at, state = _ts(at), str(ScheduleState.ISSUED)
        for site_id, version, valid_from, valid_until, payload in items:
            latest.pop((site_id, version), None)  # a version given twice: the later one, issued last
            latest[(site_id, version)] = (
                site_id,
                version,
                _ts(valid_from, "valid_from"),
                _ts(valid_until, "valid_until"),
                bytes(payload),
                issued_at,
                state,
            )
        rows = list(latest.values())
        # one statement per chunk, not two per row: sqlite3 lets go of the GIL around every
        # statement it steps, and taking it back from a busy event loop is what costs. REPLACE
        # drops the row a version given again had, and the new row is the newest
        per = max(1, self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 7)
        chunks = [rows[first : first + per] for first in range(0, len(rows), per)]

        def insert(db: sqlite3.Connection, chunk: list[tuple]) -> None:
            values = ",".join(["(?,?,?,?,?,?,?,'',NULL)"] * len(chunk))
            db.execute(
                f"INSERT OR REPLACE INTO schedules ({_SCHEDULE_COLUMNS}) VALUES {values}",
                [v for row in chunk for v in row],
            )

        if len(chunks) == 1:
            with self._lock:  # one statement is a transaction of its own (autocommit)
                insert(self._db, chunks[0])
        elif chunks:
            with self._tx() as db:
                for chunk in chunks:
                    insert(db, chunk)

    def ack_many(self, items: Sequence[tuple[str, str, bool, str, datetime]]) -> list[bool]:
        """Many (site_id, version, ok, reason, at) answers in one transaction; per item, whether it
        matched an issued schedule."""
        with self._tx() as db:
            return self._ack_rows(db, items)

    @staticmethod
    def _ack_rows(db: sqlite3.Connection, items: Sequence[tuple[str, str, bool, str, datetime]]) -> list[bool]:
        out = []
        for site_id, version, ok, reason, at in items:
            state = ScheduleState.ACKED if ok else ScheduleState.NACKED
            out.append(
                db.execute(
                    "UPDATE schedules SET state = ?, reason = ?, acked_at = ? WHERE site_id = ? AND version = ?",
                    (str(state), reason, _ts(at), site_id, version),
                ).rowcount
                == 1
            )
        return out

    def ack(self, site_id: str, version: str, ok: bool, reason: str, at: datetime) -> bool:
        """The site's answer to an issued schedule; False when no such schedule was issued."""
        state = ScheduleState.ACKED if ok else ScheduleState.NACKED
        with self._tx() as db:
            return (
                db.execute(
                    "UPDATE schedules SET state = ?, reason = ?, acked_at = ? WHERE site_id = ? AND version = ?",
                    (str(state), reason, _ts(at), site_id, version),
                ).rowcount
                == 1
            )

    def current_schedule(self, site_id: str, now: datetime) -> IssuedSchedule | None:
        """The newest issued schedule still valid after `now` (whatever its ack state): what to resend."""
        r = self._one(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules"
            " WHERE site_id = ? AND valid_until > ? ORDER BY issued_at DESC, id DESC LIMIT 1",
            (site_id, _ts(now, "now")),
        )
        return None if r is None else _schedule(r)

    def latest_issue(self) -> datetime | None:
        """When the newest schedule was issued, to any site (None: none yet). Rows go in in issue
        order, so the newest row says it (the primary key: no scan of the table)."""
        r = self._one("SELECT issued_at FROM schedules ORDER BY id DESC LIMIT 1")
        return None if r is None else _dt(r[0])

    def last_acked(self, site_ids: Iterable[str]) -> dict[str, IssuedSchedule]:
        """Per site, the newest schedule it acked (accepted), by issue time then issue order: the
        one its node holds (with the import-limit share it plans within when its link is down).
        Sites that never acked one are left out. Each site walks its `schedules_site` index from
        the newest row back to its first ACKED one, so the cost does not grow with the table."""
        out: dict[str, IssuedSchedule] = {}
        with self._lock:
            for site_id in dict.fromkeys(site_ids):
                r = self._db.execute(
                    f"SELECT {_SCHEDULE_COLUMNS} FROM schedules INDEXED BY schedules_site"
                    " WHERE site_id = ? AND state = ? ORDER BY issued_at DESC, id DESC LIMIT 1",
                    (site_id, str(ScheduleState.ACKED)),
                ).fetchone()
                if r is not None:
                    out[site_id] = _schedule(r)
        return out

    def schedule(self, site_id: str, version: str) -> IssuedSchedule | None:
        """One issued schedule by its version (None: none such)."""
        r = self._one(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE site_id = ? AND version = ?", (site_id, version)
        )
        return None if r is None else _schedule(r)

    def schedules(self, site_id: str, limit: int = 20) -> list[IssuedSchedule]:
        """Issued schedules, newest first: by issue time, then by issue order."""
        rows = self._all(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE site_id = ? ORDER BY issued_at DESC, id DESC LIMIT ?",
            (site_id, limit),
        )
        return [_schedule(r) for r in rows]

    # -- solve reports ------------------------------------------------------------------------------
    def save_report(self, solve_id: str, at: datetime, payload: str) -> None:
        """Store a solve report (JSON text the caller made); saving a solve_id again replaces it."""
        with self._tx() as db:
            db.execute("DELETE FROM reports WHERE solve_id = ?", (solve_id,))
            db.execute("INSERT INTO reports (solve_id, at, payload) VALUES (?,?,?)", (solve_id, _ts(at), payload))

    def report(self, solve_id: str) -> ReportRecord | None:
        r = self._one("SELECT solve_id, at, payload FROM reports WHERE solve_id = ?", (solve_id,))
        return None if r is None else _report(r)

    def latest_report(self) -> ReportRecord | None:
        reports = self.reports(limit=1)
        return reports[0] if reports else None

    def reports(self, limit: int = 20) -> list[ReportRecord]:
        """Reports newest first: by `at`, then by save order."""
        return [
            _report(r)
            for r in self._all("SELECT solve_id, at, payload FROM reports ORDER BY at DESC, id DESC LIMIT ?", (limit,))
        ]
