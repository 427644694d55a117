"""The node's journal: schedules, commands and EV sessions in one SQLite file (WAL).

Every write commits with `synchronous=FULL`, so a command state the engine has
recorded survives a power cut; batches of state changes share one transaction, which
is what keeps that affordable. After a crash the node reopens the file and carries on:
open commands go again under their idempotency ids, finished ones never do, and the
newest schedule is still the one in force.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from sitenode.dispatch.commands import Command, CommandState, CommandType
from sitenode.model.sessions import EVSession
from sitenode.telemetry import TelemetryPoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    version TEXT PRIMARY KEY, source TEXT NOT NULL, received_at TEXT NOT NULL,
    valid_from TEXT NOT NULL, valid_until TEXT NOT NULL, frame BLOB NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, asset_id TEXT NOT NULL, type TEXT NOT NULL, value_kw REAL, due_at TEXT NOT NULL,
    source TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at TEXT,
    last_error TEXT NOT NULL, expires_at TEXT);
CREATE INDEX IF NOT EXISTS commands_open ON commands(state) WHERE state IN ('PENDING', 'DISPATCHED');
CREATE INDEX IF NOT EXISTS commands_due ON commands(due_at, id);
CREATE TABLE IF NOT EXISTS sessions (session_id TEXT PRIMARY KEY, body TEXT NOT NULL, ended INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS telemetry (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_outcomes (
    session_id TEXT PRIMARY KEY, departed_at TEXT NOT NULL, need_kwh REAL NOT NULL, delivered_kwh REAL NOT NULL,
    measured INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class SessionOutcome:
    """An EV session closed at its departure: what it needed and what was measured delivered
    (kWh); the shortfall is what the node reports it could not give. A node whose chargers
    report nothing (no OCPP device: a dry run) measures nothing and claims no shortfall."""

    session_id: str
    departed_at: datetime
    need_kwh: float
    delivered_kwh: float
    measured: bool = True

    @property
    def shortfall_kwh(self) -> float:
        return max(0.0, self.need_kwh - self.delivered_kwh) if self.measured else 0.0


@dataclass(frozen=True, eq=False)
class StoredSchedule:
    version: str
    source: str
    received_at: datetime
    valid_from: datetime
    valid_until: datetime
    frame: pd.DataFrame


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- commands (the dispatch engine's CommandStore) --------------------------------
    def save_commands(self, commands: Iterable[Command]) -> None:
        rows = [
            (
                c.id,
                c.asset_id,
                str(c.type),
                c.value_kw,
                _ts(c.due_at),
                c.source,
                str(c.state),
                c.attempts,
                _ts(c.next_attempt_at),
                c.last_error,
                _ts(c.expires_at),
            )
            for c in commands
        ]
        if not rows:
            return
        with self._tx():
            self._db.executemany("INSERT OR REPLACE INTO commands VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def _commands(self, where: str = "", args: tuple = ()) -> list[Command]:
        out = []
        for r in self._db.execute(f"SELECT * FROM commands {where} ORDER BY due_at, id", args):
            out.append(
                Command(
                    r[0],
                    r[1],
                    CommandType(r[2]),
                    r[3],
                    datetime.fromisoformat(r[4]),  # due_at is NOT NULL
                    r[5],
                    CommandState(r[6]),
                    r[7],
                    _dt(r[8]),
                    r[9],
                    _dt(r[10]),
                )
            )
        return out

    def open_commands(self) -> list[Command]:
        return self._commands("WHERE state IN ('PENDING', 'DISPATCHED')")

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        wanted, found = list(ids), set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found |= {r[0] for r in self._db.execute(f"SELECT id FROM commands WHERE id IN ({marks})", chunk)}
        return found

    def holding(self) -> dict[tuple[str, CommandType], tuple[str, datetime]]:
        """Per (asset, type), the command that completed last (what the device holds): id and due time."""
        out: dict[tuple[str, CommandType], tuple[str, datetime]] = {}
        rows = self._db.execute(
            "SELECT id, asset_id, type, due_at FROM commands WHERE state = 'COMPLETED' ORDER BY rowid"
        )
        for command_id, asset_id, kind, due in rows:
            out[(asset_id, CommandType(kind))] = (command_id, datetime.fromisoformat(due))
        return out

    def commands(self) -> list[Command]:
        return self._commands()

    def recent_commands(self, limit: int = 50, due_by: datetime | None = None) -> list[Command]:
        """The `limit` commands due last (by `due_by` when given: a plan's future setpoints are
        not yet recent), newest first by due time, then id: what the node reports to the portfolio."""
        where, args = ("WHERE due_at <= ?", (due_by.astimezone(UTC).isoformat(),)) if due_by is not None else ("", ())
        rows = self._db.execute(f"SELECT * FROM commands {where} ORDER BY due_at DESC, id DESC LIMIT ?", (*args, limit))
        return [
            Command(
                r[0],
                r[1],
                CommandType(r[2]),
                r[3],
                datetime.fromisoformat(r[4]),  # due_at is NOT NULL
                r[5],
                CommandState(r[6]),
                r[7],
                _dt(r[8]),
                r[9],
                _dt(r[10]),
            )
            for r in rows
        ]

    def last_setpoints(self) -> dict[tuple[str, CommandType], float]:
        """What each device was last told and accepted: a re-plan repeats none of it."""
        out: dict[tuple[str, CommandType], float] = {}
        # in the order they completed, not by due time: two plans' commands for one step both
        # run when the newer plan arrives late, and the device holds the one that ran last
        # (every save replaces the row, so rowid follows the order of the last state change)
        rows = self._db.execute(
            "SELECT asset_id, type, value_kw FROM commands"
            " WHERE state = 'COMPLETED' AND value_kw IS NOT NULL ORDER BY rowid"
        )
        for asset_id, kind, value in rows:
            out[(asset_id, CommandType(kind))] = value
        return out

    # -- schedules ----------------------------------------------------------------------
    def save_schedule(self, version: str, source: str, frame: pd.DataFrame, received_at: datetime) -> None:
        # columns and float64 values as raw bytes: a schedule is saved on every re-plan, and
        # a Parquet writer would cost more than the solve it records
        buffer = io.BytesIO()
        np.savez(
            buffer,
            columns=np.array(frame.columns, dtype=str),
            values=frame.to_numpy(dtype=float),
            index=frame.index.as_unit("ns").asi8,
        )
        step = frame.index[1] - frame.index[0] if len(frame) > 1 else pd.Timedelta(0)
        with self._tx():
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM schedules").fetchone()[0]
            self._db.execute(
                "INSERT OR REPLACE INTO schedules VALUES (?,?,?,?,?,?,?)",
                (
                    version,
                    source,
                    _ts(received_at),
                    frame.index[0].isoformat(),
                    (frame.index[-1] + step).isoformat(),
                    buffer.getvalue(),
                    seq,
                ),
            )

    def current_schedule(self) -> StoredSchedule | None:
        row = self._db.execute("SELECT * FROM schedules ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else self._stored(row)

    @staticmethod
    def _stored(row: tuple) -> StoredSchedule:
        stored = np.load(io.BytesIO(row[5]))
        index = pd.DatetimeIndex(pd.to_datetime(stored["index"], utc=True), name="timestamp")
        frame = pd.DataFrame(stored["values"], index=index, columns=[str(c) for c in stored["columns"]])
        return StoredSchedule(row[0], row[1], _dt(row[2]), _dt(row[3]), _dt(row[4]), frame)  # type: ignore[arg-type]

    def schedule_at(self, at: datetime) -> StoredSchedule | None:
        """The newest schedule whose window holds `at`: a schedule received for the next step
        leaves the step under way to the one before it."""
        row = self._db.execute(
            "SELECT * FROM schedules WHERE valid_from <= ? AND valid_until > ? ORDER BY seq DESC LIMIT 1",
            (at.isoformat(), at.isoformat()),
        ).fetchone()
        return None if row is None else self._stored(row)

    def latest_version(self, source: str) -> str:
        """The newest schedule from `source` ("" when none): what a node tells the portfolio it holds."""
        row = self._db.execute(
            "SELECT version FROM schedules WHERE source = ? ORDER BY seq DESC LIMIT 1", (source,)
        ).fetchone()
        return "" if row is None else str(row[0])

    # -- EV sessions ------------------------------------------------------------------------
    def upsert_session(self, session: EVSession) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?,?,0)", (session.session_id, session.model_dump_json())
            )

    def end_session(self, session_id: str) -> bool:
        with self._tx():
            return self._end(session_id)

    def _end(self, session_id: str) -> bool:
        return (
            self._db.execute("UPDATE sessions SET ended = 1 WHERE session_id = ? AND ended = 0", (session_id,)).rowcount
            == 1
        )

    def close_session(self, outcome: SessionOutcome) -> bool:
        """A session past its departure: ended, with what it needed and got, in one transaction."""
        with self._tx():
            ended = self._end(outcome.session_id)
            if ended:
                self._db.execute(
                    "INSERT OR REPLACE INTO session_outcomes VALUES (?,?,?,?,?)",
                    (
                        outcome.session_id,
                        outcome.departed_at.isoformat(),
                        outcome.need_kwh,
                        outcome.delivered_kwh,
                        int(outcome.measured),
                    ),
                )
        return ended

    def session_outcomes(self) -> list[SessionOutcome]:
        rows = self._db.execute("SELECT * FROM session_outcomes ORDER BY departed_at, session_id")
        return [SessionOutcome(r[0], datetime.fromisoformat(r[1]), float(r[2]), float(r[3]), bool(r[4])) for r in rows]

    def sessions(self) -> list[EVSession]:
        rows = self._db.execute("SELECT body FROM sessions WHERE ended = 0 ORDER BY session_id")
        return [EVSession.model_validate_json(r[0]) for r in rows]

    # -- telemetry, kept until the portfolio has it ------------------------------------
    def append_telemetry(self, point: TelemetryPoint) -> TelemetryPoint:
        body = dataclasses.asdict(point)
        body.pop("seq")
        body["at"] = point.at.isoformat()
        # AUTOINCREMENT never reuses a number, even after the rows before it are pruned
        with self._tx():
            seq = self._db.execute("INSERT INTO telemetry (body) VALUES (?)", (json.dumps(body),)).lastrowid
        return dataclasses.replace(point, seq=int(seq or 0))

    def telemetry_after(self, seq: int, limit: int = 500) -> list[TelemetryPoint]:
        out = []
        for number, body in self._db.execute(
            "SELECT seq, body FROM telemetry WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ):
            fields = json.loads(body)
            fields["at"] = datetime.fromisoformat(fields["at"])
            out.append(TelemetryPoint(**fields, seq=number))
        return out

    def telemetry_backlog(self) -> tuple[int, datetime | None]:
        """How many points wait for the portfolio's ack (acked ones are pruned), and when the oldest was taken."""
        count, first = self._db.execute("SELECT COUNT(*), MIN(seq) FROM telemetry").fetchone()
        if not count:
            return 0, None
        row = self._db.execute("SELECT body FROM telemetry WHERE seq = ?", (first,)).fetchone()
        return int(count), datetime.fromisoformat(json.loads(row[0])["at"]) if row else None

    def prune_telemetry(self, up_to_seq: int) -> int:
        with self._tx():
            return self._db.execute("DELETE FROM telemetry WHERE seq <= ?", (up_to_seq,)).rowcount

    # -- small settings that must survive a restart (the portfolio's import limit) --------
    def put_setting(self, key: str, value: str) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

    def setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
