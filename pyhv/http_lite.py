"""HTTP/1.1 to pyhvd with the standard library only: over its unix socket, or TCP with TLS.

The ``pyhv`` command is a short-lived process, and most of its commands are one or a few small
requests to a local socket: httpx cost it about 70 ms of imports for features such requests do
not use (pools, proxies, HTTP/2). Each request here opens its own connection (a unix socket
connects in microseconds) and reads the whole answer, so no connection is ever reused stale.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit


class ConnectFailed(OSError):
    """Nothing accepted the connection (no socket, refused, unknown host)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("pyhvd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class HttpTransport:
    """Requests to one pyhvd: ``unix_path``, else ``base_url`` (``http://`` or ``https://``)."""

    def __init__(
        self,
        *,
        unix_path: str | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.unix_path = unix_path
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._ssl = ssl_context
        split = urlsplit(base_url or "http://pyhvd")
        self._https = split.scheme == "https"
        self._netloc = split.netloc
        self._prefix = split.path.rstrip("/")

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.unix_path is not None:
            return _UnixConnection(self.unix_path, timeout)
        if self._https:
            return http.client.HTTPSConnection(self._netloc, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self._netloc, timeout=timeout)

    @contextlib.contextmanager
    def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None,
        content: bytes | str | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> Iterator[tuple[http.client.HTTPResponse, socket.socket]]:
        conn = self._connection(timeout)
        try:
            try:
                conn.connect()
            except OSError as e:
                raise ConnectFailed(e.errno, e.strerror or str(e)) from e
            url = self._prefix + path + (f"?{urlencode(params)}" if params else "")
            body = content.encode() if isinstance(content, str) else content
            sock = conn.sock
            conn.request(method, url, body=body, headers={**self.headers, **(headers or {})})
            yield conn.getresponse(), sock
        finally:
            conn.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """The whole answer. :raises ConnectFailed: nothing listens. :raises OSError,
        http.client.HTTPException: the exchange failed or timed out (``TimeoutError``)."""
        with self._exchange(
            method,
            path,
            params=params,
            content=content,
            headers=headers,
            timeout=timeout or self.timeout,
        ) as (response, _):
            return Response(response.status, response.read())

    @contextlib.contextmanager
    def stream(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> Iterator[http.client.HTTPResponse]:
        """A GET whose answer is read as it comes (no read timeout once connected)."""
        with self._exchange(
            "GET", path, params=None, content=None, headers=headers, timeout=self.timeout
        ) as (response, sock):
            sock.settimeout(None)
            yield response
