"""``docker-registry`` (distribution 2.8.2) with TLS, its access log and
direct requests against it."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import ssl
from typing import TYPE_CHECKING, Optional

from .httpclient import HttpResponse, http_request
from .images import CONTAINERD_MANIFEST_ACCEPT
from .net import ConnectionCounter
from .process import Service, free_port, make_tempdir, run, wait_for
from .pullgate import _deep_merge, to_yaml
from .tls import TestCA

if TYPE_CHECKING:
    from .tokens import TokenServer


@dataclasses.dataclass
class AccessEntry:
    """One line of the registry's combined access log."""
    client: str
    user: str
    method: str
    path: str
    status: int
    bytes: int
    user_agent: str

    @property
    def repository(self) -> Optional[str]:
        """The <name> of a /v2/<name>/(manifests|blobs|tags|referrers)/ path."""
        m = re.match(r"^/v2/(.+?)/(manifests|blobs|tags|referrers)/", self.path.split("?")[0])
        return m.group(1) if m else None


_COMBINED_RE = re.compile(
    r'^(?P<client>\S+) \S+ (?P<user>\S+) \[[^\]]*\] "(?P<method>\S+) (?P<path>\S+) [^"]*" '
    r'(?P<status>\d{3}) (?P<bytes>\S+)(?: "[^"]*" "(?P<ua>[^"]*)")?')


class Registry(Service):
    """``docker-registry serve`` with TLS on 127.0.0.1:<free port>.

    Storage and logs live in a temp dir. ``htpasswd=(user, password)`` turns
    on basic auth (bcrypt). ``token_server`` (a :class:`TokenServer`) turns on
    ``auth: token`` with that server's realm, service, issuer and signing cert;
    ``token_user=(user, password)`` is then what skopeo pushes with.
    ``extra_config`` is merged into the YAML config.
    ``count_connections=True`` also counts TCP connection attempts
    (:class:`ConnectionCounter`; needs the private netns).
    """

    def __init__(self, ca: TestCA, name: str = "registry",
                 htpasswd: Optional[tuple[str, str]] = None,
                 port: Optional[int] = None, extra_config: Optional[dict] = None,
                 count_connections: bool = False, start: bool = True,
                 token_server: Optional[TokenServer] = None,
                 token_user: Optional[tuple[str, str]] = None) -> None:
        super().__init__()
        self.name = name
        self.ca = ca
        self.dir = make_tempdir(f"pgit-{name}-")
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"https://{self.host}"
        self.credentials = htpasswd
        self.token_server = token_server
        if token_server is not None:
            if htpasswd:
                raise ValueError("htpasswd and token_server exclude each other")
            self.credentials = token_user
        self.counter = ConnectionCounter(self.port) if count_connections else None
        cfg: dict = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text",
                    "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": os.path.join(self.dir, "data")},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host,
                     "tls": {"certificate": ca.server_cert, "key": ca.server_key},
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
            "health": {"storagedriver": {"enabled": False}},
        }
        if htpasswd:
            user, password = htpasswd
            line = run(["htpasswd", "-Bbn", user, password]).stdout.strip()
            path = os.path.join(self.dir, "htpasswd")
            with open(path, "w") as f:
                f.write(line + "\n")
            cfg["auth"] = {"htpasswd": {"realm": f"{name}-realm", "path": path}}
        if token_server is not None:
            cfg["auth"] = {"token": {"realm": token_server.realm,
                                     "service": token_server.service,
                                     "issuer": token_server.issuer,
                                     "rootcertbundle": token_server.signer.cert}}
        _deep_merge(cfg, extra_config or {})
        self.config_path = os.path.join(self.dir, "config.yml")
        with open(self.config_path, "w") as f:
            f.write(to_yaml(cfg))
        if start:
            self.start()

    @property
    def access_log_path(self) -> str:
        """Combined access log (the registry writes it to stdout)."""
        return self.stdout_path

    def start(self) -> None:
        """Start the registry and wait until /v2/ answers over TLS."""
        self._spawn(["docker-registry", "serve", self.config_path], self.dir)
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until GET /v2/ answers 200 (or 401 with auth) over verified TLS."""
        ctx = self.ca.ssl_context()

        def ready():
            self.check_alive()
            try:
                r = http_request("GET", self.url + "/v2/", ssl_context=ctx, timeout=2)
            except (OSError, ssl.SSLError):
                return False
            return r.status in (200, 401)
        wait_for(ready, timeout, interval=0.1, what=f"{self.name} /v2/")

    def requests(self) -> list[AccessEntry]:
        """Every request in the access log so far, oldest first."""
        entries = []
        try:
            with open(self.access_log_path, errors="replace") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return entries
        for line in lines:
            m = _COMBINED_RE.match(line)
            if not m:
                continue
            entries.append(AccessEntry(
                client=m["client"], user=m["user"], method=m["method"], path=m["path"],
                status=int(m["status"]),
                bytes=int(m["bytes"]) if m["bytes"].isdigit() else 0,
                user_agent=m["ua"] or ""))
        return entries

    def request_count(self, repository: Optional[str] = None) -> int:
        """Number of logged requests (optionally only for one repository)."""
        return len([e for e in self.requests()
                    if repository is None or e.repository == repository])

    def connection_count(self) -> int:
        """TCP connection attempts to the registry port (needs
        ``count_connections=True``)."""
        if self.counter is None:
            raise RuntimeError(f"{self.name} was started without count_connections=True")
        return self.counter.count()

    def auth_headers(self, repository: Optional[str] = None) -> dict:
        """Authorization header for direct requests: Basic for the htpasswd
        user; with token auth a pull token for ``repository`` minted locally
        (not through the token server's HTTP endpoint, so it is not recorded)."""
        if self.token_server is not None:
            scopes = [f"repository:{repository}:pull"] if repository else []
            token = self.token_server.mint("harness", scopes)
            return {"Authorization": f"Bearer {token}"}
        if not self.credentials:
            return {}
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def head_manifest(self, repo: str, ref: str,
                      accept: str = CONTAINERD_MANIFEST_ACCEPT) -> HttpResponse:
        """HEAD /v2/<repo>/manifests/<ref> directly against the registry."""
        headers = {"Accept": accept, **self.auth_headers(repo)}
        return http_request("HEAD", f"{self.url}/v2/{repo}/manifests/{ref}",
                            headers=headers, ssl_context=self.ca.ssl_context())
