"""Registry credentials: docker config.json, RS256 JWTs and an HTTPS
docker token service."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import json
import os
import ssl
import subprocess
import threading
import time
import urllib.parse
from typing import Iterable, Optional

from .process import make_tempdir, register_cleanup, run
from .tls import TestCA


def basic_auth_value(user: str, password: str) -> str:
    """base64("user:password"), as in a docker config.json ``auth`` field."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def write_docker_config(path: str, auths: dict) -> str:
    """Write a docker ``config.json`` ``{"auths": AUTHS}`` (mode 0600)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": auths}, f, indent=2)
    os.replace(path + ".tmp", path)
    return path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def libtrust_key_id(spki_der: bytes) -> str:
    """The libtrust key id distribution uses as a JWT ``kid``: base32 (no
    padding) of the first 240 bits of SHA-256 over the DER
    SubjectPublicKeyInfo, in 12 groups of 4 joined by ':'."""
    b32 = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class JwtSigner:
    """An RSA key plus a self-signed cert for it (a registry's
    ``rootcertbundle``); signs RS256 JWTs with the openssl CLI (the stdlib
    has no RSA). The header carries ``kid`` = the key's libtrust id."""

    def __init__(self, workdir: Optional[str] = None, cn: str = "pullgate-test-token-signer") -> None:
        self.dir = workdir or make_tempdir("pgit-jwt-")
        self.key = os.path.join(self.dir, "token-signing.key")
        self.cert = os.path.join(self.dir, "token-signing.crt")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
             "-subj", f"/CN={cn}", "-keyout", self.key, "-out", self.cert])
        self.public_der = subprocess.run(
            ["openssl", "x509", "-in", self.cert, "-noout", "-pubkey"],
            capture_output=True, check=True).stdout
        self.public_der = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "DER"], input=self.public_der,
            capture_output=True, check=True).stdout
        self.kid = libtrust_key_id(self.public_der)

    def sign(self, claims: dict) -> str:
        """A compact RS256 JWS over ``claims``."""
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input.encode(), capture_output=True,
                             check=True).stdout
        return signing_input + "." + _b64url(sig)


@dataclasses.dataclass
class TokenRequest:
    """One request the token server received."""
    method: str
    path: str
    query: dict          # name -> list of values (GET query)
    form: dict           # name -> list of values (POST x-www-form-urlencoded body)
    authorization: Optional[str]   # the raw header, or None
    basic_user: Optional[str]      # user of a Basic header
    basic_ok: Optional[bool]       # whether its password was right (None: no Basic)
    user_agent: str
    status: int = 0                # what the server answered
    token: Optional[str] = None    # the JWT it issued, if any

    @property
    def scopes(self) -> list[str]:
        return self.query.get("scope", []) + self.form.get("scope", [])

    def param(self, name: str) -> Optional[str]:
        """First value of a query or form parameter."""
        vals = self.query.get(name) or self.form.get(name)
        return vals[0] if vals else None


class TokenServer:
    """An HTTPS docker token service (distribution's ``auth: token`` realm)
    on 127.0.0.1, run in a thread.

    ``GET /token?service=..&scope=..`` with Basic ``user:password`` from
    ``users``, and the OAuth2 ``POST /token`` (``grant_type=refresh_token``
    with a token from ``refresh_tokens`` (token -> subject), or
    ``grant_type=password``) issue an RS256 JWT granting pull+push on every
    requested repository, answered as ``{"token", "expires_in"}`` (GET) or
    ``{"access_token", "expires_in", "scope"}`` (POST). Anonymous requests
    get 401. Every request is recorded in ``requests``; issued tokens also in
    ``issued``. Knobs: ``delay`` (seconds before answering), ``fail_status``
    (answer every request with this status), ``expires_in``.
    """

    def __init__(self, ca: TestCA, signer: JwtSigner, users: dict,
                 refresh_tokens: Optional[dict] = None, service: str = "test-registry",
                 issuer: str = "test-issuer", expires_in: int = 300) -> None:
        self.ca, self.signer = ca, signer
        self.users = dict(users)
        self.refresh_tokens = dict(refresh_tokens or {})
        self.service, self.issuer = service, issuer
        self.expires_in = expires_in
        self.delay = 0.0
        self.fail_status: Optional[int] = None
        self.requests: list[TokenRequest] = []
        self.issued: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, body: dict, extra: Optional[dict] = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                form: dict = {}
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    raw = self.rfile.read(length).decode(errors="replace")
                    if (self.headers.get("Content-Type") or "").startswith(
                            "application/x-www-form-urlencoded"):
                        form = urllib.parse.parse_qs(raw, keep_blank_values=True)
                authz = self.headers.get("Authorization")
                user, ok = None, None
                if authz and authz.lower().startswith("basic "):
                    try:
                        u, _, p = base64.b64decode(authz[6:].strip()).decode().partition(":")
                        user, ok = u, server.users.get(u) == p
                    except (ValueError, UnicodeDecodeError):
                        user, ok = "", False
                rec = TokenRequest(self.command, url.path,
                                   urllib.parse.parse_qs(url.query, keep_blank_values=True),
                                   form, authz, user, ok, self.headers.get("User-Agent") or "")
                with server._lock:
                    server.requests.append(rec)
                if server.delay:
                    time.sleep(server.delay)
                status, body = server._answer(rec)
                rec.status = status
                self._send(status, body,
                           {"WWW-Authenticate": 'Basic realm="token"'} if status == 401 else None)

            do_GET = do_POST = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ca.server_cert, ca.server_key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.realm = f"https://{self.host}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        register_cleanup(f"token server :{self.port}", self.stop)

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()

    def requests_since(self, n: int) -> list[TokenRequest]:
        """Requests after the first ``n`` (snapshot with ``len(requests)``)."""
        with self._lock:
            return list(self.requests[n:])

    def mint(self, subject: str, scopes: Iterable[str], expires_in: Optional[int] = None) -> str:
        """A signed token for ``subject`` granting pull+push on each
        ``repository:<name>:<actions>`` scope (recorded in ``issued``)."""
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, _actions = rest.rpartition(":")
            if kind == "repository" and name:
                access.append({"type": "repository", "name": name, "actions": ["pull", "push"]})
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service,
                  "exp": now + (expires_in or self.expires_in), "nbf": now - 10, "iat": now,
                  "jti": base64.b32encode(os.urandom(10)).decode(), "access": access}
        token = self.signer.sign(claims)
        with self._lock:
            self.issued.append(token)
        return token

    def _answer(self, rec: TokenRequest) -> tuple[int, dict]:
        if self.fail_status:
            return self.fail_status, {"errors": [{"code": "DENIED", "message": "token server told to fail"}]}
        if rec.path != urllib.parse.urlsplit(self.realm).path:
            return 404, {"errors": [{"code": "NOT_FOUND", "message": rec.path}]}
        if rec.param("service") != self.service:
            return 400, {"errors": [{"code": "INVALID", "message": "unknown service"}]}
        if rec.method == "GET":
            if not rec.basic_ok:
                return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad or no credentials"}]}
            rec.token = self.mint(rec.basic_user or "", rec.scopes)
            return 200, {"token": rec.token, "expires_in": self.expires_in,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        # POST: OAuth2 token endpoint
        grant = rec.param("grant_type")
        if not rec.param("client_id"):
            return 400, {"error": "invalid_request", "error_description": "client_id missing"}
        if grant == "refresh_token":
            subject = self.refresh_tokens.get(rec.param("refresh_token") or "")
        elif grant == "password":
            u = rec.param("username") or ""
            subject = u if u in self.users and self.users[u] == rec.param("password") else None
        else:
            return 400, {"error": "unsupported_grant_type"}
        if subject is None:
            return 401, {"error": "invalid_grant"}
        rec.token = self.mint(subject, rec.scopes)
        return 200, {"access_token": rec.token, "expires_in": self.expires_in,
                     "scope": " ".join(rec.scopes)}
