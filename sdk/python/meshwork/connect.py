"""meshwork.connect(): one channel to a meshwork gateway (or a single service) and a typed client
for every service on it, with a default deadline, credentials and W3C trace context on every
call. Hand-written; the clients themselves are generated (meshwork._clients)."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, Union

import grpc

from meshwork._clients import Clients

DEFAULT_TIMEOUT = 10.0
"""Seconds a unary call may take when the caller gives no `timeout`."""

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

Traceparent = Union[str, Callable[[], Optional[str]], None]


def connect(
    address: str,
    tls: bool = False,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    *,
    stream_timeout: Optional[float] = None,
    token: Optional[str] = None,
    traceparent: Traceparent = None,
    metadata: Sequence[Tuple[str, str]] = (),
    root_certificates: Optional[bytes] = None,
    options: Sequence[Tuple[str, Any]] = (),
) -> Clients:
    """Returns clients for every meshwork service over one channel to `address` ("host:port").

    - `tls`: TLS with the system's roots, or `root_certificates` (PEM bytes) when given.
    - `timeout`: the deadline, in seconds, of every unary and client-streaming call that does
      not pass its own (`None`: no deadline). Server- and bidirectional-streaming calls (watches,
      meeting streams) get `stream_timeout`, none by default.
    - `token`: sent as `authorization: Bearer <token>` on every call.
    - `traceparent`: a W3C traceparent (`00-<trace id>-<span id>-<flags>`), or a function that
      returns the caller's current one (or None); sent as `traceparent` metadata so the mesh's
      spans join the caller's trace. A call whose own metadata has a traceparent keeps it;
      malformed values are not sent.
    - `metadata`: more `(key, value)` pairs for every call.
    """
    if tls:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates), options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    extra = list(metadata)
    if token:
        extra.append(("authorization", "Bearer " + token))
    defaults = _Defaults(timeout, stream_timeout, extra, traceparent)
    return Clients(grpc.intercept_channel(channel, defaults))


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, timeout: Optional[float], metadata: list) -> None:
        self.method = base.method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class _Defaults(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Fills in what a call left out: its deadline, the shared metadata, the traceparent."""

    def __init__(
        self,
        timeout: Optional[float],
        stream_timeout: Optional[float],
        metadata: list,
        traceparent: Traceparent,
    ) -> None:
        self._timeout = timeout
        self._stream_timeout = stream_timeout
        self._metadata = metadata
        self._traceparent = traceparent

    def _details(self, details: grpc.ClientCallDetails, streaming_response: bool) -> _CallDetails:
        timeout = details.timeout
        if timeout is None:
            timeout = self._stream_timeout if streaming_response else self._timeout
        metadata = list(details.metadata or ())
        present = {key.lower() for key, _ in metadata}
        metadata += [(k, v) for k, v in self._metadata if k.lower() not in present]
        if "traceparent" not in present:
            current = self._traceparent() if callable(self._traceparent) else self._traceparent
            if current and _TRACEPARENT.match(current) and not current.startswith("ff"):
                metadata.append(("traceparent", current))
        return _CallDetails(details, timeout, metadata)

    def intercept_unary_unary(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details, False), request)

    def intercept_unary_stream(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details, True), request)

    def intercept_stream_unary(
        self, continuation: Callable, details: grpc.ClientCallDetails, requests: Iterable[Any]
    ) -> Any:
        return continuation(self._details(details, False), requests)

    def intercept_stream_stream(
        self, continuation: Callable, details: grpc.ClientCallDetails, requests: Iterable[Any]
    ) -> Any:
        return continuation(self._details(details, True), requests)
