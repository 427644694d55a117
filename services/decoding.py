"""Requests that do not decode are bad input: INVALID_ARGUMENT naming the request, not UNKNOWN.

grpc's aio server decodes a request before any handler or interceptor code runs, and answers
bytes that are not the method's message with UNKNOWN ("Unexpected DecodeError") and a logged
traceback. This interceptor takes the request undecoded and decodes it itself, inside the
call, so a bad one gets the same answer as any other bad input (a `google.rpc.BadRequest`
with the field `request`), and a bad message on a request stream ends only that stream.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from services.errors import abort
from services.handlers import behaviour_of, rebuild
from sitenode.errors import InvalidInput

Decoder = Callable[[bytes], Any]


def _decoded(decode: Decoder | None, raw: Any, what: str) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except (DecodeError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput.one(what, f"could not be decoded as the method's message ({type(exc).__name__})") from None


async def _messages(raw: AsyncIterator[bytes], decode: Decoder | None, context: grpc.aio.ServicerContext) -> Any:
    index = 0
    async for item in raw:
        try:
            message = _decoded(decode, item, f"request[{index}]")
        except InvalidInput as exc:
            await abort(context, exc)
        yield message
        index += 1


class RequestDecoder(grpc.aio.ServerInterceptor):
    """Put first in the server's interceptors: it wraps what all the others made."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        decode: Decoder = handler.request_deserializer
        streaming_in, streaming_out = handler.request_streaming, handler.response_streaming
        inner = behaviour_of(handler)

        async def request_of(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            if streaming_in:
                return _messages(raw, decode, context)
            try:
                return _decoded(decode, raw, "request")
            except InvalidInput as exc:
                await abort(context, exc)

        async def unary(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            return await inner(await request_of(raw, context), context)

        async def stream(raw: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in inner(await request_of(raw, context), context):
                yield item

        behaviour = stream if streaming_out and inspect.isasyncgenfunction(inner) else unary
        return rebuild(handler, behaviour, request_deserializer=None)
