"""The one way gridmesh builds a gRPC server: health, reflection, auth, metrics, keepalive,
TLS (or plaintext on loopback behind an explicit flag), graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import ipaddress
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.auth import AuthInterceptor, Role
from services.certs import server_credentials
from services.decoding import RequestDecoder
from services.observability import Metrics, MetricsInterceptor
from sitenode.errors import InvalidInput

KEEPALIVE = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]


@dataclass(frozen=True)
class ServerOptions:
    listen: str
    insecure_loopback: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # mTLS: clients must present a certificate from this CA
    tokens: dict[str, Role] = field(default_factory=dict)
    operator_methods: frozenset[str] = frozenset()
    token_exempt: tuple[str, ...] = ()  # method prefixes authenticated by client certificate instead


def _host(listen: str) -> str:
    host = listen.rsplit(":", 1)[0].strip("[]")
    return host


def is_loopback(listen: str) -> bool:
    host = _host(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StreamCloser(grpc.aio.ServerInterceptor):
    """Ends every open response stream (WatchEvents, WatchPortfolio, the nodes' Connect, health
    Watch) with UNAVAILABLE once `close` is called: clients see a status at once and reconnect
    elsewhere or later, unary calls still get the shutdown's grace, and the server does not wait
    out the grace for streams that would never end by themselves."""

    DETAILS = "the server is shutting down"

    def __init__(self) -> None:
        self.closing = asyncio.Event()

    def close(self) -> None:
        self.closing.set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not handler.response_streaming:
            return handler
        closing = self.closing
        inner = handler.stream_stream if handler.request_streaming else handler.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if closing.is_set():
                await context.abort(grpc.StatusCode.UNAVAILABLE, StreamCloser.DETAILS)
            items = aiter(inner(request, context))
            # every step of the handler runs in one context of its own, as if in one task: what it
            # sets in a context variable (a log field it binds) holds across its yields and resets
            ctx = contextvars.copy_context()

            async def advance() -> Any:
                return await anext(items)

            async def close_items() -> None:
                await items.aclose()

            shutdown = asyncio.ensure_future(closing.wait())
            step: asyncio.Future[Any] | None = None
            try:
                while True:
                    step = asyncio.create_task(advance(), context=ctx)
                    await asyncio.wait({step, shutdown}, return_when=asyncio.FIRST_COMPLETED)
                    if not step.done():  # the handler's own cleanup (its finally) runs as it is cancelled
                        step.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await step
                        await context.abort(grpc.StatusCode.UNAVAILABLE, StreamCloser.DETAILS)
                    try:
                        item = step.result()
                    except StopAsyncIteration:
                        return
                    yield item
            finally:
                shutdown.cancel()
                # a call cancelled (by its client, or the server's stop) while waiting on the handler:
                # its step is a task of its own, left pending for ever unless cancelled here, and the
                # handler can't be closed while that step still runs it
                if step is not None:
                    if not step.done():
                        step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await step  # a step that ended as the call was cancelled: its outcome is taken
                with contextlib.suppress(Exception):
                    await asyncio.create_task(close_items(), context=ctx)

        async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
            """A handler that streams with `context.write` (grpc's health Watch) is one coroutine."""
            if closing.is_set():
                await context.abort(grpc.StatusCode.UNAVAILABLE, StreamCloser.DETAILS)
            work = asyncio.ensure_future(inner(request, context))
            shutdown = asyncio.ensure_future(closing.wait())
            try:
                await asyncio.wait({work, shutdown}, return_when=asyncio.FIRST_COMPLETED)
                if not work.done():
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await work
                    await context.abort(grpc.StatusCode.UNAVAILABLE, StreamCloser.DETAILS)
                work.result()
            finally:
                shutdown.cancel()
                if not work.done():
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await work

        make = (
            grpc.stream_stream_rpc_method_handler if handler.request_streaming else grpc.unary_stream_rpc_method_handler
        )
        return make(
            stream if inspect.isasyncgenfunction(inner) else writer,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass(eq=False)
class Built:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    services: tuple[str, ...]
    metrics: Metrics
    streams: StreamCloser = field(default_factory=StreamCloser)


def build_server(
    options: ServerOptions, register: Callable[[grpc.aio.Server], Sequence[str]], metrics: Metrics | None = None
) -> Built:
    """`register` adds the servicers and returns their full service names."""
    # refuse bad options before anything is built
    if options.insecure_loopback and not is_loopback(options.listen):
        raise InvalidInput.one("listen", f"plaintext is only allowed on a loopback address, got {options.listen!r}")
    if not options.insecure_loopback and not (options.tls_cert and options.tls_key):
        raise InvalidInput.one("listen", "give --tls-cert and --tls-key, or --insecure-loopback on a loopback address")
    metrics = metrics or Metrics()
    streams = StreamCloser()
    interceptors = [
        RequestDecoder(),  # first: it wraps the others' handlers, so it decodes before any of them runs
        MetricsInterceptor(metrics),
        AuthInterceptor(options.tokens, options.operator_methods, options.token_exempt),
        streams,
    ]
    server = grpc.aio.server(interceptors=interceptors, options=KEEPALIVE)
    names = tuple(register(server))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    if options.insecure_loopback:
        port = server.add_insecure_port(options.listen)
    else:
        assert options.tls_cert is not None and options.tls_key is not None  # refused above otherwise
        credentials = server_credentials(
            options.tls_cert,
            options.tls_key,
            options.tls_client_ca,
            require_client_auth=options.tls_client_ca is not None,
        )
        port = server.add_secure_port(options.listen, credentials)
    return Built(server, port, health, names, metrics, streams)


async def start(built: Built) -> None:
    await built.server.start()
    for name in built.services:
        await built.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    await built.health.set("", health_pb2.HealthCheckResponse.SERVING)


async def stop(built: Built, grace_seconds: float = 5.0) -> None:
    """No new calls; open streams end at once with UNAVAILABLE; unary calls in flight get
    `grace_seconds` to finish."""
    await built.health.enter_graceful_shutdown()
    built.streams.close()
    await built.server.stop(grace_seconds)


def stop_on_signals(stop_event: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
