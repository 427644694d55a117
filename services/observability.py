"""Prometheus metrics and a log line for every call: requests, latency, errors by method and code.

A call that changes something logs at INFO; a read that succeeds (GetStatus, List..., Watch...,
WhoAmI, health checks: what dashboards and probes poll) at DEBUG. The node's and the portfolio's
own state is exported by collectors that read it when scraped (`services.metrics_node`,
`services.metrics_portfolio`, on the owner's event loop through `LoopCollector`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("gridmesh.rpc")
READ_PREFIXES = ("Get", "List", "Watch")
READ_METHODS = frozenset({"WhoAmI"})
READ_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
COLLECT_TIMEOUT_SECONDS = 3.0  # a scrape waits this long for the event loop, then leaves the state out


def is_read(method: str) -> bool:
    """A read-only call (a poll): its per-call log line goes to DEBUG."""
    if method.startswith(READ_SERVICES):
        return True
    name = method.rsplit("/", 1)[-1]
    return name in READ_METHODS or name.startswith(READ_PREFIXES)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "gridmesh_grpc_requests", "gRPC calls handled", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "gridmesh_grpc_latency_seconds",
            "gRPC call latency",
            ["method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def serve(self, listen: str) -> int:
        """Expose /metrics over HTTP on HOST:PORT (port 0 picks one); returns the port."""
        host, port = listen.rsplit(":", 1)
        http, thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        self._http: WSGIServer | None = http
        self._http_thread = thread
        return http.server_port

    def close(self) -> None:
        """Stop serving /metrics: the server's thread ends and its socket is closed."""
        http = getattr(self, "_http", None)  # unset until serve()
        if http is not None:
            http.shutdown()
            http.server_close()
            self._http_thread.join(5)
            self._http = None

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.requests.labels(method, code.name).inc()
        self.latency.labels(method).observe(seconds)
        level = logging.DEBUG if code is grpc.StatusCode.OK and is_read(method) else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                "rpc %s %s %.1f ms",
                method,
                code.name,
                seconds * 1000,
                extra={"rpc": method, "code": code.name, "ms": round(seconds * 1000, 3)},
            )

    def add(self, collector: Collector) -> None:
        """Register a collector of the service's own state on this registry."""
        self.registry.register(collector)


class LoopCollector(Collector):
    """Reads state that an event loop owns when Prometheus scrapes: `read` runs on that loop
    (the scrape comes on the HTTP server's thread), so it sees a consistent state and never
    races the loop's own changes, and nothing it exports goes stale. A loop that does not
    answer within `timeout` leaves the state out of that scrape and counts it in
    `gridmesh_metrics_collect_timeouts_total`; with no loop (or from the loop's own thread)
    `read` runs in place."""

    name = "state"

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, timeout: float = COLLECT_TIMEOUT_SECONDS) -> None:
        self.loop, self.timeout = loop, timeout
        self.timeouts = 0

    def read(self) -> list[Metric]:
        raise NotImplementedError

    def families(self) -> list[Metric]:
        """Every family `read` may yield, without samples (what `describe` tells the registry)."""
        return []

    def describe(self) -> Iterable[Metric]:
        return [*self.families(), self._timeouts_family()]

    def _timeouts_family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "gridmesh_metrics_collect_timeouts",
            "scrapes that left a service's state out: its event loop did not answer in time",
            labels=["collector"],
        )
        family.add_metric([self.name], self.timeouts)
        return family

    def _on_loop(self) -> bool:
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return True
        try:
            return asyncio.get_running_loop() is loop  # scraped from the loop's own thread (a test)
        except RuntimeError:
            return False

    def collect(self) -> Iterable[Metric]:
        if self._on_loop():
            families = self.read()
        else:
            assert self.loop is not None
            done: concurrent.futures.Future[list[Metric]] = concurrent.futures.Future()

            def run() -> None:
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(self.read())
                    except BaseException as exc:  # noqa: BLE001 - handed to the scrape's thread
                        done.set_exception(exc)

            try:
                self.loop.call_soon_threadsafe(run)
                families = done.result(self.timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):  # RuntimeError: the loop closed meanwhile
                done.cancel()
                self.timeouts += 1
                log.warning("metrics: the %s state was left out of a scrape (the event loop did not answer)", self.name)
                families = []
        return [*families, self._timeouts_family()]


def _code(context: grpc.aio.ServicerContext, failed: bool) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_streaming:
            return handler
        method, metrics = details.method, self.metrics
        if handler.response_streaming:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started, failed = time.perf_counter(), True
                try:
                    async for item in inner_stream(request, context):
                        yield item
                    failed = False
                finally:
                    metrics.observe(method, _code(context, failed), time.perf_counter() - started)

            async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
                """A handler that streams with `context.write` (grpc's health Watch) is a coroutine."""
                started, failed = time.perf_counter(), True
                try:
                    await inner_stream(request, context)
                    failed = False
                finally:
                    metrics.observe(method, _code(context, failed), time.perf_counter() - started)

            return grpc.unary_stream_rpc_method_handler(
                stream if inspect.isasyncgenfunction(inner_stream) else writer,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, failed = time.perf_counter(), True
            try:
                response = await inner(request, context)
                failed = False
                return response
            finally:
                metrics.observe(method, _code(context, failed), time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
