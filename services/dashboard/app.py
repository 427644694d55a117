"""`gridmesh dashboard`: the operator dashboard's web server.

A thin HTTP face on the portfolio's operator API: the page's JSON calls and its live
event stream (server-sent events fed by `WatchPortfolio`) each become gRPC calls made
with the signed-in user's own token. Signing in checks the token with `WhoAmI` and keeps
it in an HttpOnly, SameSite=Strict cookie; changes must come as JSON (a cross-site form
cannot send it), so another site cannot make a signed-in browser change anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from services.dashboard import forms, views
from services.dashboard.client import PortfolioClient
from services.errors import bad_request_fields
from sitenode.errors import InvalidInput

log = logging.getLogger("gridmesh.dashboard")
STATIC = Path(__file__).parent / "static"
COOKIE = "gridmesh_token"
CLIENT = web.AppKey("client", PortfolioClient)
HTTP_OF = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    if dataclasses.is_dataclass(body) and not isinstance(body, type):
        body = dataclasses.asdict(body)
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, default=_default))


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE, "")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """gRPC statuses and bad forms as HTTP statuses with JSON bodies; field errors by field."""
    try:
        return await handler(request)
    except InvalidInput as exc:
        return _json({"error": str(exc), "fields": {v.field: v.description for v in exc.violations}}, 400)
    except grpc.aio.AioRpcError as exc:
        status = HTTP_OF.get(exc.code(), 502)
        if status >= 500:
            log.warning("portfolio call failed: %s %s", exc.code().name, exc.details())
        return _json({"error": exc.details() or exc.code().name, "fields": bad_request_fields(exc)}, status)


@web.middleware
async def json_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD") and request.content_type != "application/json":
        return _json({"error": "send JSON (Content-Type: application/json)", "fields": {}}, 415)
    return await handler(request)


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise InvalidInput.one("body", f"is not JSON: {exc.msg}") from exc


def _signed_in(request: web.Request) -> str:
    token = _token(request)
    if not token:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "sign in with a token", "fields": {}}), content_type="application/json"
        )
    return token


# ---- pages and sign-in ----------------------------------------------------------------
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def login(request: web.Request) -> web.Response:
    body = await _body(request)
    token = str(body.get("token", "")).strip() if isinstance(body, dict) else ""
    if not token:
        raise InvalidInput.one("token", "is required")
    try:
        role = await request.app[CLIENT].role(token)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise InvalidInput.one("token", "is not a token this portfolio knows") from exc
        raise
    response = _json({"role": role})
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    response = _json({})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    return _json({"role": await request.app[CLIENT].role(_signed_in(request))})


# ---- views ---------------------------------------------------------------------------
# the page learns its role once, at sign-in (/api/login, /api/me); the portfolio checks
# every change anyway, so the views need no WhoAmI of their own on each poll
async def portfolio(request: web.Request) -> web.Response:
    return _json(views.portfolio_view(*await request.app[CLIENT].portfolio(_signed_in(request))))


async def site(request: web.Request) -> web.Response:
    return _json(views.site_view(await request.app[CLIENT].site(_signed_in(request), request.match_info["site_id"])))


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `flows` for every WatchPortfolio message, `solve` when a new solve lands."""
    token = _signed_in(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    call = request.app[CLIENT].watch(token)
    last_solve = None
    try:
        async for update in call:
            data = views.live_update(update)
            await response.write(f"event: flows\ndata: {json.dumps(data, default=_default)}\n\n".encode())
            if data["latest_solve_id"] != last_solve:
                if last_solve is not None:
                    await response.write(
                        f"event: solve\ndata: {json.dumps({'solve_id': data['latest_solve_id']})}\n\n".encode()
                    )
                last_solve = data["latest_solve_id"]
    except grpc.aio.AioRpcError as exc:
        with contextlib.suppress(ConnectionError):
            await response.write(
                f"event: failure\ndata: {json.dumps({'error': exc.details() or exc.code().name})}\n\n".encode()
            )
    except (ConnectionError, asyncio.CancelledError):
        pass  # the browser went away
    finally:
        call.cancel()
    return response


# ---- changes -------------------------------------------------------------------------
async def put_settings(request: web.Request) -> web.Response:
    token = _signed_in(request)
    sent = forms.settings_request(request.match_info["site_id"], await _body(request))
    got = await request.app[CLIENT].set_settings(token, sent)
    return _json(
        {
            "settings": {
                "weights": {k: getattr(got.settings.weights, k) for k in views.WEIGHT_KEYS},
                "priorities": {k: getattr(got.settings.priorities, k) for k in views.PRIORITY_KEYS},
            }
        }
    )


async def put_feeder(request: web.Request) -> web.Response:
    token = _signed_in(request)
    body = await _body(request)
    if isinstance(body, dict):
        body = {**body, "feeder_id": request.match_info["feeder_id"]}
    got = await request.app[CLIENT].set_feeder(token, forms.feeder_message(body))
    return _json(
        {"feeder_id": got.feeder.feeder_id, "cap_kw": got.feeder.cap_kw, "site_ids": list(got.feeder.site_ids)}
    )


async def post_event(request: web.Request) -> web.Response:
    token = _signed_in(request)
    got = await request.app[CLIENT].create_event(token, forms.event_message(await _body(request)))
    return _json({"event_id": got.event.event_id}, 201)


async def cancel_event(request: web.Request) -> web.Response:
    token = _signed_in(request)
    got = await request.app[CLIENT].cancel_event(token, request.match_info["event_id"])
    return _json({"event_id": got.event.event_id, "state": got.event.state})


def make_app(client: PortfolioClient) -> web.Application:
    app = web.Application(middlewares=[json_only, errors])
    app[CLIENT] = client
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, append_version=True)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/portfolio", portfolio)
    app.router.add_get("/api/sites/{site_id}", site)
    app.router.add_get("/api/stream", stream)
    app.router.add_put("/api/sites/{site_id}/settings", put_settings)
    app.router.add_put("/api/feeders/{feeder_id}", put_feeder)
    app.router.add_post("/api/events", post_event)
    app.router.add_post("/api/events/{event_id}/cancel", cancel_event)

    async def close(app: web.Application) -> None:
        await app[CLIENT].close()

    app.on_cleanup.append(close)
    return app


@dataclasses.dataclass(frozen=True)
class Serving:
    runner: web.AppRunner
    url: str


async def serve(client: PortfolioClient, host: str, port: int, tls: ssl.SSLContext | None = None) -> Serving:
    """Start on host:port (0: any free port) and return where it listens."""
    runner = web.AppRunner(make_app(client), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    return Serving(runner, f"{'https' if tls else 'http'}://{shown}:{bound}/")
