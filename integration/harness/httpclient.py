"""The HTTP client of the tests (stdlib http.client), one for every use.

:func:`http_request` sends one request to a URL (plain or TLS) on a new
connection; :class:`HttpConnection` keeps one connection open across
requests (keep-alive) and counts how often it connected. Both stream the
body through SHA-256, can keep only its head (for large blobs), and return
an :class:`HttpResponse`: an error status is a response, never an
exception. A body cut short raises ``http.client.IncompleteRead``.
Environment proxies are never used (the network rule: loopback only).

Byte-level observations (framing, EOF versus reset, a response without a
request) need a raw socket instead: ``fault_support.RawConnection``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import ssl
import urllib.error
import urllib.parse
from typing import Optional

_READ_CHUNK = 256 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 10


@dataclasses.dataclass
class HttpResponse:
    """Status, headers and body of one HTTP exchange."""
    status: int
    headers: http.client.HTTPMessage
    body: bytes                     # the whole body, or its first ``keep_body`` bytes
    nbytes: int = -1                # body bytes received (-1: len(body))
    sha256: str = ""                # "sha256:<hex>" of the whole body ("": of body)

    def __post_init__(self) -> None:
        if self.nbytes < 0:
            self.nbytes = len(self.body)
        if not self.sha256:
            self.sha256 = "sha256:" + hashlib.sha256(self.body).hexdigest()

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body.decode())

    def header(self, name: str) -> Optional[str]:
        """One header value (case-insensitive) or None."""
        return self.headers.get(name)

    @property
    def digest(self) -> str:
        """Same as ``sha256``: what a blob's body must hash to."""
        return self.sha256

    @property
    def content_length(self) -> Optional[int]:
        """The Content-Length header as a number, or None."""
        value = self.header("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def body_head(self) -> bytes:
        """The first 512 body bytes (for failure messages)."""
        return self.body[:512]


class HttpConnection:
    """One HTTP/1.1 connection to ``host:port`` (TLS with ``ssl_context``),
    kept open across requests. It is opened on first use, and again after
    the server answered ``Connection: close`` or after :meth:`close`;
    ``connects`` counts the opens. Not thread-safe: one per thread."""

    def __init__(self, port: int, host: str = "127.0.0.1",
                 ssl_context: Optional[ssl.SSLContext] = None, timeout: float = 30) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.conn: Optional[http.client.HTTPConnection] = None
        self.connects = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.ssl_context is not None:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                   context=self.ssl_context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn.connect()
            self.conn = conn
            self.connects += 1
        return self.conn

    def local_port(self) -> Optional[int]:
        """The client-side port of the open connection, or None."""
        if self.conn is None or self.conn.sock is None:
            return None
        return self.conn.sock.getsockname()[1]

    def send(self, method: str, target: str, headers: Optional[dict] = None,
             body: Optional[bytes] = None) -> None:
        """Connect if needed and send one request; raises OSError when the
        connect (or TLS handshake) or the send fails."""
        self._connection().request(method, target, body=body, headers=headers or {})

    def receive(self, keep_body: Optional[int] = None) -> HttpResponse:
        """Read the response to the request just sent, the whole body
        (hashed; only the first ``keep_body`` bytes kept, all if None).
        Raises OSError or http.client.HTTPException (IncompleteRead when
        the body ends before its Content-Length or last chunk)."""
        assert self.conn is not None, "receive() without send()"
        resp = self.conn.getresponse()
        hasher = hashlib.sha256()
        kept = bytearray()
        n = 0
        while True:
            chunk = resp.read(_READ_CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
            n += len(chunk)
            if keep_body is None:
                kept += chunk
            elif len(kept) < keep_body:
                kept += chunk[:keep_body - len(kept)]
        if resp.length:
            # read(amt) ends quietly at EOF; a whole read() raises this.
            self.close()
            raise http.client.IncompleteRead(bytes(kept), resp.length)
        out = HttpResponse(resp.status, resp.headers, bytes(kept), n, "sha256:" + hasher.hexdigest())
        if resp.will_close:
            self.close()
        return out

    def request(self, method: str, target: str, headers: Optional[dict] = None,
                body: Optional[bytes] = None, keep_body: Optional[int] = None) -> HttpResponse:
        """:meth:`send`, then :meth:`receive`."""
        self.send(method, target, headers, body)
        return self.receive(keep_body)

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def http_request(method: str, url: str, headers: Optional[dict] = None,
                 body: Optional[bytes] = None, ssl_context: Optional[ssl.SSLContext] = None,
                 timeout: float = 30, follow_redirects: bool = False,
                 keep_body: Optional[int] = None) -> HttpResponse:
    """One request on a new connection (``Connection: close``), closed
    afterwards; returns error statuses instead of raising.

    A failed connect, TLS handshake or send raises ``urllib.error.URLError``
    with the cause in ``.reason`` (an OSError, as urllib reports it).
    ``follow_redirects``: a 301/302/303/307/308 with a Location is followed
    (up to 10 times), as GET unless the method was HEAD, without the body."""
    for _ in range(_MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        tls = parts.scheme == "https"
        conn = HttpConnection(parts.port or (443 if tls else 80), host=parts.hostname or "",
                              ssl_context=(ssl_context or ssl.create_default_context()) if tls
                              else None, timeout=timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = {"Connection": "close", **(headers or {})}
        try:
            try:
                conn.send(method, target, sent, body)
            except OSError as exc:
                raise urllib.error.URLError(exc) from exc
            resp = conn.receive(keep_body)
        finally:
            conn.close()
        location = resp.header("Location")
        if not (follow_redirects and resp.status in _REDIRECTS and location):
            return resp
        url = urllib.parse.urljoin(url, location)
        method = "HEAD" if method == "HEAD" else "GET"
        body = None
    return resp
