"""A stand-in mirror that denies everything (harness self-tests)."""

from __future__ import annotations

import http.server
import json
import threading

from .process import register_cleanup


class StubMirror:
    """An in-process plain-HTTP server on 127.0.0.1 that records every request
    and answers each with the same OCI error (default 403 DENIED). Stands in
    for a mirror to check containerd's routing without pullgate."""

    def __init__(self, status: int = 403, code: str = "DENIED",
                 message: str = "stub mirror denies everything") -> None:
        self.requests: list[tuple[str, str, dict]] = []
        stub = self
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                stub.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        register_cleanup(f"stub mirror :{self.port}", self.stop)

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
