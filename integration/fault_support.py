"""Helpers for pullgate's fault-injection tests (python3 stdlib only).

* :class:`FaultyRegistry` - a small misbehaving HTTPS OCI registry (threaded,
  TLS with a cert of the harness TestCA or any other cert) serving images
  built with ``harness.build_oci_layout``; per-digest faults: close the
  connection after N body bytes (FIN, RST or TLS close_notify), serve wrong
  bytes of the same length, stall after N bytes; optional Bearer challenge
  pointing at any token realm.
* :func:`raw_request` / :class:`RawConnection` - an HTTP/1.1 client on a
  plain socket that reports exactly what arrived: status, headers, body
  bytes, framing, whether the response was complete, and how the connection
  ended (``complete``, ``eof``, ``reset``, ``timeout``) with timestamps.
  (The ordinary HTTP client, which hides all that, is harness.http_request
  and harness.HttpConnection.)
* :func:`content_integrity` - hash every blob containerd has committed.

Network rule: everything here talks to 127.0.0.1 only, and is meant to run
inside the private network namespace of ``harness.enter_private_netns``.
Every loop is bounded in count and in time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import http.server
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CHUNK = 16 * 1024


# --------------------------------------------------------------------------
# the misbehaving registry
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Fault:
    """What to do when serving one digest (blob, or manifest by digest).

    mode ``close``: end the connection when the body reaches absolute offset
    ``after`` (``style``: ``fin`` = TCP FIN without TLS close_notify, ``rst``
    = TCP reset, ``tls`` = TLS close_notify then FIN); ``stall``: stop
    sending at offset ``after`` for ``stall_seconds`` (then close with FIN);
    ``corrupt``: serve the same number of bytes, but wrong ones (each byte at
    ``corrupt_offsets`` is inverted; default: the middle byte);
    ``trickle``: a slow but healthy upstream: ``piece`` bytes every
    ``interval`` seconds, the whole body; ``truncate`` / ``extend``: a
    complete-looking response (Content-Length matches what is sent) that is
    ``after`` bytes long / has ``after`` extra bytes; ``close_headers`` /
    ``stall_headers``: close at once / stay silent for ``stall_seconds``
    after reading the request, before any response byte.
    ``chunked``: send the body with Transfer-Encoding: chunked and no
    Content-Length (for any mode, also none)."""
    mode: str = "none"
    after: int = 0
    style: str = "fin"
    stall_seconds: float = 20.0
    corrupt_offsets: tuple = ()
    chunked: bool = False
    piece: int = 8 * 1024
    interval: float = 0.5


@dataclasses.dataclass
class UpstreamRequest:
    """One request the faulty registry received."""
    method: str
    path: str
    range: Optional[str]
    authorization: Optional[str]
    user_agent: str
    status: int = 0
    body_bytes: int = 0
    outcome: str = ""         # complete | fault:<mode>/<style> | client_gone
    t_start: float = 0.0
    t_end: float = 0.0


class _Abort(Exception):
    """Raised inside a handler after a fault ended the connection."""


class _TLSThreadingServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer whose TLS handshake runs in the request thread
    (a failed or slow handshake never blocks the accept loop)."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, ctx: ssl.SSLContext, owner: "FaultyRegistry") -> None:
        self.ctx = ctx
        self.owner = owner
        super().__init__(addr, handler)

    def finish_request(self, request, client_address) -> None:
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.owner._handshake_failed(exc)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def shutdown_request(self, request) -> None:
        try:
            request.close()
        except OSError:
            pass

    def handle_error(self, request, client_address) -> None:
        pass  # faults and clients going away are the point here


class FaultyRegistry:
    """A threaded HTTPS OCI registry on 127.0.0.1 serving the images added
    with :meth:`add_image`, with per-digest :class:`Fault` s.

    ``cert``: (certificate, key) paths; default the CA's 127.0.0.1 server
    cert (pass one of another CA, or for another IP, for a TLS failure).
    ``challenge``: (realm, service): every request without
    ``Authorization: Bearer ...`` gets 401 with a Bearer challenge (any
    bearer token is then accepted). Every request is recorded in
    ``requests``; TLS handshakes that failed are counted in
    ``handshake_failures`` (with the error text in ``handshake_errors``).
    """

    def __init__(self, ca: h.TestCA, name: str = "faulty",
                 cert: Optional[tuple[str, str]] = None,
                 challenge: Optional[tuple[str, str]] = None) -> None:
        self.name = name
        self.ca = ca
        self.challenge = challenge
        self.manifests: dict[tuple[str, str], tuple[str, str, bytes]] = {}
        self.blobs: dict[str, str] = {}           # digest -> file path
        self.faults: dict[str, Fault] = {}
        self.requests: list[UpstreamRequest] = []
        self.handshake_failures = 0
        self.handshake_errors: list[str] = []
        self._lock = threading.Lock()
        self._release = threading.Event()        # ends every stall at once
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except _Abort:
                    self.close_connection = True
                except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
                    self.close_connection = True

            def do_GET(self) -> None:
                owner._serve(self)

            do_HEAD = do_GET

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        crt, key = cert or (ca.server_cert, ca.server_key)
        ctx.load_cert_chain(crt, key)
        self.server = _TLSThreadingServer(("127.0.0.1", 0), Handler, ctx, self)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        h.register_cleanup(f"faulty registry {name} :{self.port}", self.stop)

    # -- content -------------------------------------------------------------

    def add_image(self, repo: str, info: h.ImageInfo) -> None:
        """Serve ``info`` (an OCI layout from build_oci_layout) as repo:tag."""
        blobs_dir = os.path.join(info.layout_dir, "blobs", "sha256")
        with open(os.path.join(blobs_dir, info.manifest.digest.split(":")[1]), "rb") as f:
            data = f.read()
        entry = (info.manifest.media_type, info.manifest.digest, data)
        with self._lock:
            self.manifests[(repo, info.tag)] = entry
            self.manifests[(repo, info.manifest.digest)] = entry
            for d in info.blob_digests:
                self.blobs[d] = os.path.join(blobs_dir, d.split(":")[1])

    def set_fault(self, digest: str, fault: Fault) -> None:
        with self._lock:
            self.faults[digest] = fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def release_stalls(self) -> None:
        """End every stall now (and any stall started from now on)."""
        self._release.set()

    def requests_since(self, n: int) -> list[UpstreamRequest]:
        with self._lock:
            return list(self.requests[n:])

    def stop(self) -> None:
        """Stop serving (idempotent); ends stalls."""
        self._release.set()
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()

    def _handshake_failed(self, exc: Exception) -> None:
        with self._lock:
            self.handshake_failures += 1
            self.handshake_errors.append(f"{type(exc).__name__}: {exc}")

    # -- serving -------------------------------------------------------------

    def _serve(self, hd: http.server.BaseHTTPRequestHandler) -> None:
        path = urllib.parse.urlsplit(hd.path).path
        rec = UpstreamRequest(hd.command, hd.path, hd.headers.get("Range"),
                              hd.headers.get("Authorization"),
                              hd.headers.get("User-Agent") or "", t_start=time.monotonic())
        with self._lock:
            self.requests.append(rec)
        try:
            self._answer(hd, path, rec)
            if not rec.outcome:
                rec.outcome = "complete"
        except _Abort:
            raise
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            rec.outcome = rec.outcome or "client_gone"
            raise _Abort()
        finally:
            rec.t_end = time.monotonic()

    def _json(self, hd, rec, status: int, body: dict, extra: Optional[dict] = None) -> None:
        data = json.dumps(body).encode()
        rec.status = status
        hd.send_response(status)
        hd.send_header("Content-Type", "application/json")
        hd.send_header("Docker-Distribution-API-Version", "registry/2.0")
        hd.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            hd.send_header(k, v)
        hd.end_headers()
        if hd.command != "HEAD":
            hd.wfile.write(data)
            rec.body_bytes = len(data)

    def _answer(self, hd, path: str, rec: UpstreamRequest) -> None:
        m_repo = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if self.challenge and not (rec.authorization or "").startswith("Bearer "):
            realm, service = self.challenge
            scope = f"repository:{m_repo.group(1)}:pull" if m_repo else ""
            chal = f'Bearer realm="{realm}",service="{service}"' + (f',scope="{scope}"' if scope else "")
            self._json(hd, rec, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                  "message": "authentication required"}]},
                       {"WWW-Authenticate": chal})
            return
        if path == "/v2/":
            self._json(hd, rec, 200, {})
            return
        if not m_repo:
            self._json(hd, rec, 404, {"errors": [{"code": "NAME_UNKNOWN", "message": path}]})
            return
        repo, kind, ref = m_repo.groups()
        with self._lock:
            fault = self.faults.get(ref)
            if kind == "manifests":
                entry = self.manifests.get((repo, ref))
                blob_path = None
            else:
                entry = None
                blob_path = self.blobs.get(ref)
        if kind == "manifests":
            if entry is None:
                self._json(hd, rec, 404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": ref}]})
                return
            media_type, digest, data = entry
            self._body(hd, rec, data, media_type, digest, fault, allow_range=False)
            return
        if blob_path is None:
            self._json(hd, rec, 404, {"errors": [{"code": "BLOB_UNKNOWN", "message": ref}]})
            return
        with open(blob_path, "rb") as f:
            data = f.read()
        self._body(hd, rec, data, "application/octet-stream", ref, fault, allow_range=True)

    def _body(self, hd, rec: UpstreamRequest, data: bytes, media_type: str, digest: str,
              fault: Optional[Fault], allow_range: bool) -> None:
        fault = fault or Fault()
        if fault.mode in ("close_headers", "stall_headers"):
            rec.outcome = f"fault:{fault.mode}"
            if fault.mode == "stall_headers":
                self._release.wait(fault.stall_seconds)
            _close(hd.connection, fault.style)
            raise _Abort()
        if fault.mode == "truncate":
            data = data[:fault.after]
        elif fault.mode == "extend":
            data = data + b"\0" * fault.after
        if fault.mode == "corrupt":
            buf = bytearray(data)
            for off in (fault.corrupt_offsets or (len(buf) // 2,)):
                buf[off] ^= 0xFF
            data = bytes(buf)
        total = len(data)
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", rec.range or "") if allow_range else None
        if m and int(m.group(1)) < total:
            start, status = int(m.group(1)), 206
        rec.status = status
        hd.send_response(status)
        hd.send_header("Content-Type", media_type)
        hd.send_header("Docker-Content-Digest", digest)
        hd.send_header("Docker-Distribution-API-Version", "registry/2.0")
        hd.send_header("ETag", f'"{digest}"')
        if allow_range:
            hd.send_header("Accept-Ranges", "bytes")
        if status == 206:
            hd.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        if fault.chunked and hd.command != "HEAD":
            hd.send_header("Transfer-Encoding", "chunked")
        else:
            hd.send_header("Content-Length", str(total - start))
        hd.end_headers()
        hd.wfile.flush()
        if hd.command == "HEAD":
            return
        limit = fault.after if fault.mode in ("close", "stall") else total
        step = fault.piece if fault.mode == "trickle" else CHUNK
        pos = start
        while pos < total and pos < limit:
            if fault.mode == "trickle" and pos > start and self._release.wait(fault.interval):
                step = CHUNK  # released: send the rest at once
            n = min(step, total - pos, limit - pos)
            piece = data[pos:pos + n]
            if fault.chunked:
                piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
            hd.wfile.write(piece)
            rec.body_bytes += n
            pos += n
        if pos >= total:
            if fault.chunked:
                hd.wfile.write(b"0\r\n\r\n")
            return
        # the fault
        rec.outcome = f"fault:{fault.mode}/{fault.style}"
        conn = hd.connection
        if fault.mode == "stall":
            self._release.wait(fault.stall_seconds)
            _close(conn, "fin")
        else:
            _close(conn, fault.style)
        raise _Abort()


def _close(conn, style: str) -> None:
    """End a (TLS) connection: ``fin`` (no close_notify), ``rst`` or ``tls``."""
    try:
        if style == "rst":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        if style == "tls":
            conn.settimeout(2)
            try:
                conn.unwrap()  # sends close_notify
            except (OSError, ssl.SSLError, ValueError):
                pass
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


def issue_cert_for(ca: h.TestCA, name: str, ips=(), dns=()) -> tuple[str, str]:
    """A leaf cert from ``ca`` (e.g. for another IP than 127.0.0.1)."""
    return ca.issue(name, ips=list(ips), dns=list(dns))


class VarLogSandboxedPullgate(h.Pullgate):
    """A harness Pullgate run in its own mount namespace with a tmpfs on
    /var/log: a config that falls back to the default decision log
    (/var/log/pullgate/decisions.log) cannot write on the host. Same pid,
    signals and files as a plain Pullgate (unshare and sh exec into it)."""

    def start(self, timeout: float = 30) -> None:
        script = 'mount -t tmpfs -o size=16m pullgate-test /var/log && exec "$0" "$@"'
        self._spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                     self.binary, "serve", "--config", self.config_path], self.dir,
                    env=h.clean_env(**self.env_overrides))
        self.wait_listening(timeout)


# --------------------------------------------------------------------------
# a raw HTTP/1.1 client that reports exactly what arrived
# --------------------------------------------------------------------------

@dataclasses.dataclass
class RawResult:
    """What one request on a raw socket got back."""
    status: Optional[int] = None
    reason: str = ""
    headers: dict = dataclasses.field(default_factory=dict)   # lower-case name -> value
    body: bytes = b""
    framing: str = ""               # length | chunked | none (HEAD/204/304) | close
    content_length: Optional[int] = None
    complete: bool = False          # the framing said the body ended properly
    end: str = ""                   # complete | eof | reset | timeout
    error: str = ""
    t_sent: float = 0.0             # monotonic times
    t_headers: Optional[float] = None
    t_last_byte: Optional[float] = None
    t_end: float = 0.0
    raw_header: bytes = b""

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body.decode())

    def describe(self) -> str:
        """One paragraph for assertion messages."""
        hdr = self.raw_header.decode(errors="replace").strip().replace("\r\n", " | ")
        return (f"status={self.status} framing={self.framing} content_length={self.content_length} "
                f"body_bytes={len(self.body)} complete={self.complete} end={self.end} "
                f"error={self.error!r} header=[{hdr}] body[:200]={self.body[:200]!r}")


class RawConnection:
    """One client connection (plain TCP) to pullgate; requests in sequence."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port, self.host = port, host
        self.buf = b""
        self.closed = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self, res: RawResult, deadline: float) -> bytes:
        """Next bytes, b"" at EOF; sets res.end on EOF/reset/timeout."""
        left = deadline - time.monotonic()
        if left <= 0:
            res.end = "timeout"
            return b""
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            res.end = "timeout"
            return b""
        except ConnectionResetError as exc:
            res.end, res.error = "reset", str(exc)
            return b""
        except OSError as exc:
            res.end, res.error = "reset", f"{type(exc).__name__}: {exc}"
            return b""
        if not data:
            res.end = "eof"
        return data

    def request(self, method: str, target: str, headers: Optional[dict] = None,
                timeout: float = 10, send: bool = True) -> RawResult:
        """Send ``method target`` (unless ``send`` is False: then only read a
        response) and read one response within ``timeout`` seconds."""
        res = RawResult()
        res.t_sent = time.monotonic()
        deadline = res.t_sent + timeout
        if send:
            lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}",
                     "User-Agent: pullgate-fault-test"]
            for k, v in (headers or {}).items():
                lines.append(f"{k}: {v}")
            try:
                self.send(("\r\n".join(lines) + "\r\n\r\n").encode())
            except OSError as exc:
                res.end, res.error = "reset", f"send: {exc}"
                res.t_end = time.monotonic()
                return res
        # header
        while b"\r\n\r\n" not in self.buf:
            data = self._recv(res, deadline)
            if not data:
                res.t_end = time.monotonic()
                self.closed = res.end != "timeout"
                return res
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        res.t_headers = time.monotonic()
        res.raw_header = head + b"\r\n\r\n"
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        res.status = int(parts[1])
        res.reason = parts[2] if len(parts) > 2 else ""
        for line in lines[1:]:
            k, _, v = line.partition(":")
            res.headers[k.strip().lower()] = v.strip()
        te = (res.header("Transfer-Encoding") or "").lower()
        if method == "HEAD" or res.status in (204, 304) or 100 <= res.status < 200:
            res.framing, res.complete, res.end = "none", True, "complete"
            if res.header("Content-Length") is not None:
                res.content_length = int(res.header("Content-Length"))
        elif "chunked" in te:
            res.framing = "chunked"
            self._read_chunked(res, deadline)
        elif res.header("Content-Length") is not None:
            res.framing = "length"
            res.content_length = int(res.header("Content-Length"))
            body = bytearray(self.buf[:res.content_length])
            self.buf = self.buf[res.content_length:]
            if body:
                res.t_last_byte = time.monotonic()
            while len(body) < res.content_length:
                data = self._recv(res, deadline)
                if not data:
                    break
                res.t_last_byte = time.monotonic()
                need = res.content_length - len(body)
                body += data[:need]
                self.buf = data[need:]
            res.body = bytes(body)
            if len(body) == res.content_length:
                res.complete, res.end = True, "complete"
        else:
            res.framing = "close"
            body = bytearray(self.buf)
            self.buf = b""
            while True:
                data = self._recv(res, deadline)
                if not data:
                    break
                res.t_last_byte = time.monotonic()
                body += data
            res.body = bytes(body)
            res.complete = res.end == "eof"
        res.t_end = time.monotonic()
        if res.end in ("eof", "reset"):
            self.closed = True
        return res

    def _read_chunked(self, res: RawResult, deadline: float) -> None:
        body = bytearray()

        def need(n_or_marker) -> bool:
            while True:
                if isinstance(n_or_marker, int):
                    if len(self.buf) >= n_or_marker:
                        return True
                elif n_or_marker in self.buf:
                    return True
                data = self._recv(res, deadline)
                if not data:
                    return False
                res.t_last_byte = time.monotonic()
                self.buf += data

        for _ in range(10_000_000):
            if not need(b"\r\n"):
                break
            line, _, self.buf = self.buf.partition(b"\r\n")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # trailers: until an empty line
                while need(b"\r\n"):
                    tline, _, self.buf = self.buf.partition(b"\r\n")
                    if not tline:
                        res.complete, res.end = True, "complete"
                        break
                break
            if not need(size + 2):
                body += self.buf[:size]
                self.buf = b""
                break
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
        res.body = bytes(body)

    def wait_closed(self, timeout: float) -> str:
        """Wait until the server closes: ``eof``/``reset``, ``data`` if bytes
        arrive instead, or ``timeout``."""
        res = RawResult()
        deadline = time.monotonic() + timeout
        data = self._recv(res, deadline)
        if data:
            self.buf += data
            return "data"
        if res.end in ("eof", "reset"):
            self.closed = True
        return res.end


def raw_request(port: int, method: str, target: str, headers: Optional[dict] = None,
                timeout: float = 10) -> RawResult:
    """One request on a new connection (closed afterwards)."""
    try:
        conn = RawConnection(port, timeout=timeout)
    except OSError as exc:
        return RawResult(end="connect_failed", error=str(exc))
    try:
        return conn.request(method, target, headers, timeout)
    finally:
        conn.close()


# --------------------------------------------------------------------------
# containerd content store
# --------------------------------------------------------------------------

def content_integrity(ctrd: h.Containerd, timeout: float = 60) -> tuple[dict, list]:
    """For every digest ``ctr content ls`` lists, hash ``ctr content get
    DIGEST`` (the same as piping it into sha256sum); returns
    ({digest: actual sha256}, [descriptions of mismatches]).

    A digest that ``get`` reports "not found" AND that a second ``ls`` no
    longer lists was garbage-collected in between (content of a failed pull
    has no image and, once the pull's lease ends, no reference): recorded as
    ``"vanished"``, not as a mismatch."""
    digests = sorted(ctrd.content_digests())
    seen, bad = {}, []
    deadline = time.monotonic() + timeout
    for d in digests:
        if time.monotonic() > deadline:
            bad.append(f"timed out before checking {d}")
            break
        p = subprocess.run(["ctr", "--address", ctrd.address, "-n", ctrd.namespace,
                            "content", "get", d], capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL, env=h.clean_env())
        actual = "sha256:" + hashlib.sha256(p.stdout).hexdigest()
        if p.returncode != 0 and b"not found" in p.stderr and d not in ctrd.content_digests():
            seen[d] = "vanished"
            continue
        seen[d] = actual
        if p.returncode != 0 or actual != d:
            bad.append(f"{d}: content hashes to {actual} (ctr rc {p.returncode}, "
                       f"{len(p.stdout)} bytes, stderr {p.stderr[-200:]!r})")
    return seen, bad
