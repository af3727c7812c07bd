"""One way to put a new behaviour around a gRPC method handler, whatever its kind: the server's
interceptors (errors, metrics, authentication, watch and upload limits) are
:class:`WrappingInterceptor` s that rebuild handlers with :func:`rebuild_handler`, and write only
what their wrapper does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]
"""From a handler's behaviour ``(request or request iterator, context) -> response``, or the
response iterator of a streaming reply, to the behaviour that runs instead."""


def unchanged(behavior: Callable[..., Any]) -> Callable[..., Any]:
    return behavior


def rebuild_handler(
    handler: grpc.RpcMethodHandler,
    unary: Wrap = unchanged,
    stream: Wrap = unchanged,
    *,
    parse_requests: bool = True,
) -> grpc.RpcMethodHandler:
    """The same kind of handler (unary or streaming, either side) around a new behaviour:
    ``unary`` wraps a method that replies once (unary-unary, stream-unary), ``stream`` one that
    replies with a stream (unary-stream, stream-stream). ``parse_requests=False`` leaves
    requests undeserialized, for refusals: nothing an unauthenticated caller sends is parsed."""
    codecs = {
        "request_deserializer": handler.request_deserializer if parse_requests else None,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **codecs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **codecs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **codecs)
    return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **codecs)


class WrappingInterceptor(grpc.ServerInterceptor):
    """An interceptor that wraps the handler of each call it is given (methods this server does
    not serve pass by).

    ``by_method_only``: what :meth:`wrap` returns depends on the method and the handler alone,
    never on the call's metadata, so it is built once per method and handler and reused: the
    server builds every call's handler chain afresh, and rebuilding the same wrappers cost a
    tenth of a cheap call."""

    by_method_only = False

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if not self.by_method_only:
            return self.wrap(handler, handler_call_details)
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self.wrap(handler, handler_call_details)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def wrap(
        self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        """The handler to run for ``call`` instead of ``handler`` (or ``handler`` itself)."""
        raise NotImplementedError
