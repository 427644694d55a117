"""The spell in which a solve's schedules go out: from the solver's end until every node
that was sent its schedule has acked it, or `quiet_seconds` after the last was sent.

That spell is what a node waits on, so the portfolio keeps it clear: the hub's views (the
day accounts) wait, a node whose schedule is on its way gets that schedule instead of a ping
or a pong (it shows the portfolio alive as well, and a thousand pongs cost the event loop as
much as the schedules), and CPython's cyclic garbage collector is paused. At a thousand sites a
full collection of the portfolio's heap holds the GIL for about 0.4 s, as long as the
whole push may take, and they came every few seconds, inside pushes too. Objects freed by
reference counting go as ever; only cycles wait, for the collector's next pass after the
spell (at most `quiet_seconds` after the last schedule was sent).

Thread-safe: the spell begins in the solve's worker thread the moment the solver returns,
acks end it on the event loop, and a timer thread ends it if they do not all come.
"""

from __future__ import annotations

import gc
import threading


class PushWindow:
    def __init__(self, quiet_seconds: float) -> None:
        self.quiet_seconds = quiet_seconds
        self._lock = threading.Lock()
        self._id = 0
        self._open = False
        self._collector_was_on = False
        self._version: str | None = None
        self._awaiting: set[str] = set()
        self._coming: set[str] = set()  # sites whose schedule is not yet with their stream
        self._timer: threading.Timer | None = None

    @property
    def open(self) -> bool:
        return self._open

    def begin(self, site_ids: set[str]) -> int:
        """A solver has returned with schedules for `site_ids`: the spell begins (or goes on,
        for a solve right after another). Returns this push's id for `sent`."""
        with self._lock:
            self._coming = set(site_ids)
            self._id += 1
            self._cancel_timer()
            if not self._open:
                self._open = True
                self._collector_was_on = gc.isenabled()
                gc.disable()
            self._version, self._awaiting = None, set()
            return self._id

    def coming(self, site_id: str) -> bool:
        """Whether the site's schedule is on its way (then it needs no ping or pong)."""
        return site_id in self._coming

    def delivered(self, site_id: str) -> None:
        self._coming.discard(site_id)

    def sent(self, push_id: int, version: str, site_ids: set[str]) -> None:
        """Every schedule of push `push_id` is with its stream: the spell ends when these
        sites have acked `version`, or `quiet_seconds` from now."""
        with self._lock:
            if push_id != self._id or not self._open:
                return  # a later push took over
            self._coming = set()  # a schedule not sent by now is not coming: pongs again
            self._version, self._awaiting = version, set(site_ids)
            if not self._awaiting:
                self._close()
                return
            self._timer = threading.Timer(self.quiet_seconds, self.end, args=(push_id,))
            self._timer.daemon = True
            self._timer.start()

    def acked(self, site_id: str, version: str) -> None:
        if version != self._version:  # the common case, without the lock: not this push's ack
            return
        with self._lock:
            if version == self._version:
                self._awaiting.discard(site_id)
                if not self._awaiting:
                    self._close()

    def end(self, push_id: int | None = None) -> None:
        """End the spell (only if still push `push_id`'s, when given)."""
        with self._lock:
            if push_id is None or push_id == self._id:
                self._close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        self._cancel_timer()
        if self._open:
            self._open = False
            self._version, self._awaiting, self._coming = None, set(), set()
            if self._collector_was_on:
                gc.enable()
