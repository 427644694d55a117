"""gRPC method handlers by shape: what an interceptor needs to wrap one of any kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

_KEEP: Any = object()  # "the handler's own", for `rebuild`'s deserializer

_MAKE = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def behaviour_of(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    """The function a handler runs, whatever its shape."""
    return {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[(handler.request_streaming, handler.response_streaming)]


def rebuild(
    handler: grpc.RpcMethodHandler, behaviour: Callable[..., Any], request_deserializer: Any = _KEEP
) -> grpc.RpcMethodHandler:
    """A handler of `handler`'s shape and serializers that runs `behaviour`."""
    make = _MAKE[(handler.request_streaming, handler.response_streaming)]
    decode = handler.request_deserializer if request_deserializer is _KEEP else request_deserializer
    return make(behaviour, request_deserializer=decode, response_serializer=handler.response_serializer)
