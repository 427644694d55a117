"""One mapping from gridmesh's error tree to gRPC status codes, for every servicer.

InvalidInput becomes INVALID_ARGUMENT carrying a `google.rpc.BadRequest` with one field
violation per bad field; anything unexpected becomes INTERNAL with a short message, and
the service carries on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sitenode.errors import GridmeshError, InvalidInput

log = logging.getLogger(__name__)
T = TypeVar("T")


def status_of(exc: BaseException) -> status_pb2.Status:
    if isinstance(exc, GridmeshError):
        code = getattr(code_pb2, exc.code, code_pb2.INTERNAL)
        status = status_pb2.Status(code=code, message=str(exc))
        if isinstance(exc, InvalidInput):
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in exc.violations
                    ]
                )
            )
            status.details.append(detail)
        return status
    return status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error: {type(exc).__name__}")


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if not isinstance(exc, GridmeshError):
        log.exception("unexpected error in a servicer", exc_info=exc)
    await context.abort_with_status(rpc_status.to_status(status_of(exc)))


def mapped(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Unary handler: domain errors become statuses instead of crashing the call."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            await abort(context, exc)
            raise  # unreachable: abort raises

    return wrapper


def mapped_stream(method: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[T]:
        try:
            async for item in method(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await abort(context, exc)

    return wrapper


def bad_request_fields(error: grpc.aio.AioRpcError | grpc.RpcError) -> dict[str, str]:
    """Client side: the field violations a call failed with (tests, CLI, dashboard)."""
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    out: dict[str, str] = {}
    for detail in status.details if status else []:
        request = error_details_pb2.BadRequest()
        if detail.Unpack(request):
            out.update({v.field: v.description for v in request.field_violations})
    return out
