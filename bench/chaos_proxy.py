"""A TCP proxy of our own between a site node and the portfolio, for partitions that the
loopback interface cannot play: it runs on the harness's event loop and forwards bytes
both ways, in one of four modes switched at any time:

* ``pass``: forward;
* ``blackhole``: accept and read, forward nothing, answer nothing -- a half-open link that
  only the stream's pings can detect (connections open meanwhile stay open and silent);
* ``drop``: reset every connection (open ones at once, new ones on accept);
* ``delay``: forward each chunk `delay_ms` later, each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

MODES = ("pass", "blackhole", "drop", "delay")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN (SO_LINGER 0): the peer sees its connection reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class Proxy:
    target_port: int
    target_host: str = "127.0.0.1"
    mode: str = "pass"
    delay_ms: float = 0.0
    port: int = 0
    connections: int = 0  # accepted so far
    _server: asyncio.Server | None = None
    _pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(default_factory=set)
    _tasks: set[asyncio.Task] = field(default_factory=set)

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def set_mode(self, mode: str, delay_ms: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: one of {MODES}, got {mode!r}")
        self.mode, self.delay_ms = mode, delay_ms
        if mode == "drop":
            for a, b in list(self._pairs):
                _reset(a)
                _reset(b)
            self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "drop":
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _reset(writer)  # the portfolio is down: the node sees a refused-like reset
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, pair)),
            asyncio.create_task(self._pipe(up_reader, writer, pair)),
        ]
        self._tasks.update(tasks)
        for t in tasks:
            t.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.mode == "blackhole":
                    continue  # read and forget: nothing goes through, nothing comes back
                if self.mode == "drop":
                    break
                if self.mode == "delay" and self.delay_ms > 0:
                    await asyncio.sleep(self.delay_ms / 1000)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pairs.discard(pair)
            for w in pair:
                if self.mode == "drop":
                    _reset(w)
                else:
                    with contextlib.suppress(OSError, RuntimeError):
                        w.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for a, b in list(self._pairs):
                a.transport.abort()
                b.transport.abort()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
