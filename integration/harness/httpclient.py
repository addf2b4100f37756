"""HTTP requests from the tests (stdlib http.client)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import ssl
import urllib.error
import urllib.request
from typing import Optional


@dataclasses.dataclass
class HttpResponse:
    """Status, headers and body of one HTTP exchange."""
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body.decode())

    def header(self, name: str) -> Optional[str]:
        """One header value (case-insensitive) or None."""
        return self.headers.get(name)


_NO_REDIRECT = type("_NoRedirect", (urllib.request.HTTPRedirectHandler,),
                    {"redirect_request": lambda *a, **k: None})


def http_request(method: str, url: str, headers: Optional[dict] = None,
                 body: Optional[bytes] = None, ssl_context: Optional[ssl.SSLContext] = None,
                 timeout: float = 30, follow_redirects: bool = False) -> HttpResponse:
    """One urllib request that returns error statuses instead of raising.

    Never uses environment proxies (the network rule: loopback only)."""
    handlers = [urllib.request.ProxyHandler({}),
                urllib.request.HTTPSHandler(context=ssl_context)]
    if not follow_redirects:
        handlers.append(_NO_REDIRECT())
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return HttpResponse(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        data = err.read() if err.fp is not None else b""
        return HttpResponse(err.code, err.headers, data)
