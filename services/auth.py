"""Operator tokens with roles: a viewer may read, an operator may also change.

Clients send `authorization: Bearer <token>`. Health checks and reflection stay open
(load balancers and tooling call them without tokens).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

import grpc

from services.handlers import rebuild

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The token of an `authorization: Bearer <token>` header ("" when there is none)."""
    header = dict(metadata or ()).get("authorization", "")
    return header[7:] if isinstance(header, str) and header.lower().startswith("bearer ") else ""


def role_of(tokens: Mapping[str, Role], metadata: Iterable[tuple[str, Any]] | None) -> Role | None:
    """The role a call's bearer token grants; None for no token or an unknown one."""
    return tokens.get(bearer_token(metadata))


def _deny(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that refuses the call."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    return rebuild(handler, stream if handler.response_streaming else unary)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: dict[str, Role], operator_methods: Iterable[str], exempt: Iterable[str] = ()) -> None:
        self.tokens = dict(tokens)
        self.operator_methods = frozenset(operator_methods)
        # method prefixes whose callers prove who they are otherwise (nodes: certificates)
        self.open_prefixes = OPEN_PREFIXES + tuple(exempt)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(self.open_prefixes):
            return handler
        role = role_of(self.tokens, details.invocation_metadata)
        if role is None:
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required")
        if method in self.operator_methods and role is not Role.OPERATOR:
            return _deny(handler, grpc.StatusCode.PERMISSION_DENIED, f"{method} needs the operator role")
        return handler
