"""A bare `PortfolioLink` server: the floor under `bench/stream.py`'s telemetry figure.

    python bench/bare_link.py [--sink]   (prints "bare link serving on port N", serves until SIGTERM)

It speaks the portfolio's stream as `services/portfolio_hub.py` does (a welcome after the
hello, one outbox per stream drained by the handler, a reader task per stream, a pong per
ping) and acks every telemetry message at once, but checks nothing and stores nothing. What
it ingests with the same simulated nodes is what grpc.aio itself allows on this machine, with
no portfolio work at all, when every message is acked (the portfolio acks a site at most
every `telemetry_ack_seconds`, so it can take in more).

With `--sink` it only counts what the streams bring (no welcome, no acks, nothing sent)
and prints "received COUNT at WALL_TIME" ten times a second while the count grows: the
most a grpc.aio server takes in here, whatever feeds it.
"""

from __future__ import annotations

import benchpath  # noqa: F401 - first: keeps bench/ from shadowing the sitenode package

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator

import grpc

from services.server import KEEPALIVE
from services.stubs.gridmesh.v1 import common_pb2, portfolio_pb2, portfolio_pb2_grpc

_CLOSE = object()


class BareLink(portfolio_pb2_grpc.PortfolioLinkServicer):
    def __init__(self) -> None:
        self.outboxes: set[asyncio.Queue] = set()

    def push_all(self) -> None:
        """One schedule-sized message to every stream (SIGUSR1): the fan-out floor."""
        message = portfolio_pb2.PortfolioMessage(
            schedule=portfolio_pb2.SetpointSchedule(
                schedule=common_pb2.Schedule(
                    version=f"bare-{time.time():.6f}",
                    columns=[common_pb2.ScheduleColumn(name=f"c{k}", values=[float(k)] * 8) for k in range(8)],
                )
            )
        )
        print(f"pushed {message.schedule.schedule.version} at {time.time():.6f}", flush=True)
        for box in self.outboxes:
            box.put_nowait(message)

    async def Connect(
        self, request_iterator: AsyncIterator[portfolio_pb2.NodeMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[portfolio_pb2.PortfolioMessage]:
        first = await anext(aiter(request_iterator))
        yield portfolio_pb2.PortfolioMessage(
            welcome=portfolio_pb2.Welcome(site_id=first.hello.site_id, ping_interval_ms=1000, ping_timeout_ms=30_000)
        )
        outbox: asyncio.Queue = asyncio.Queue()
        self.outboxes.add(outbox)

        async def read() -> None:
            try:
                async for message in request_iterator:
                    kind = message.WhichOneof("body")
                    if kind == "telemetry":
                        outbox.put_nowait(
                            portfolio_pb2.PortfolioMessage(
                                telemetry_ack=portfolio_pb2.TelemetryAck(up_to_seq=message.telemetry.points[-1].seq)
                            )
                        )
                    elif kind == "ping":
                        outbox.put_nowait(
                            portfolio_pb2.PortfolioMessage(pong=portfolio_pb2.Pong(nonce=message.ping.nonce))
                        )
            finally:
                outbox.put_nowait(_CLOSE)

        reader = asyncio.create_task(read())
        try:
            while (item := await outbox.get()) is not _CLOSE:
                yield item
        finally:
            self.outboxes.discard(outbox)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


class Sink(portfolio_pb2_grpc.PortfolioLinkServicer):
    def __init__(self) -> None:
        self.received = 0

    async def Connect(
        self, request_iterator: AsyncIterator[portfolio_pb2.NodeMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[portfolio_pb2.PortfolioMessage]:
        async for _ in request_iterator:
            self.received += 1
        return
        yield  # a stream handler that never sends

    async def report(self, stop: asyncio.Event) -> None:
        told = -1
        while not stop.is_set():
            if self.received != told:
                told = self.received
                print(f"received {told} at {time.time():.6f}", flush=True)
            await asyncio.sleep(0.1)


async def serve(sink: bool) -> None:
    server = grpc.aio.server(options=KEEPALIVE)
    link = Sink() if sink else BareLink()
    portfolio_pb2_grpc.add_PortfolioLinkServicer_to_server(link, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"bare link serving on port {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if isinstance(link, BareLink):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, link.push_all)
        await stop.wait()
    else:
        await link.report(stop)
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(serve("--sink" in sys.argv[1:]))
