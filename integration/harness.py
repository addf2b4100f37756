"""Integration-test harness for pullgate (python3 stdlib only).

Starts real components on loopback inside a private network namespace:
a test CA (openssl CLI), distribution registries (``docker-registry``) with
TLS, containerd with its own root/state/socket, and the pullgate daemon.
Everything started is stopped and every temp dir removed at interpreter exit,
also when a test fails (set ``PULLGATE_IT_KEEP=1`` to keep the temp dirs).

Network rule: nothing here talks to anything but 127.0.0.1 inside the
namespace created by :func:`enter_private_netns`.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import dataclasses
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Iterable, Optional, Union

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# What containerd 1.6 sends when resolving a tag (DESIGN §8).
CONTAINERD_MANIFEST_ACCEPT = ", ".join(
    [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"])

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")

_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------
# cleanup bookkeeping
# --------------------------------------------------------------------------

_cleanups: list[tuple[str, Callable[[], None]]] = []
_cleanup_lock = threading.Lock()


def register_cleanup(what: str, fn: Callable[[], None]) -> None:
    """Run ``fn`` at exit; cleanups run last-registered-first."""
    with _cleanup_lock:
        _cleanups.append((what, fn))


def run_cleanups() -> None:
    """Run (and forget) every registered cleanup, newest first; never raises."""
    while True:
        with _cleanup_lock:
            if not _cleanups:
                return
            what, fn = _cleanups.pop()
        try:
            fn()
        except Exception as exc:  # cleanup must go on
            print(f"harness: cleanup of {what} failed: {exc}", file=sys.stderr)


atexit.register(run_cleanups)


def _sigterm_to_exit(signum, _frame):
    raise SystemExit(128 + signum)


# A SIGTERM to the test run should still run the atexit cleanups.
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _sigterm_to_exit)


# Set by CMake for a PULLGATE_SANITIZE build: ASan's shadow memory and
# quarantine make RSS figures meaningless, so memory bounds are not asserted.
SANITIZED = bool(os.environ.get("PULLGATE_SANITIZED"))


def keep_temp() -> bool:
    """True when PULLGATE_IT_KEEP=1 asks to keep temp dirs for debugging."""
    return os.environ.get("PULLGATE_IT_KEEP", "") not in ("", "0")


def _mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path`` (deepest first)."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                found.append(mp)
    return sorted(found, key=len, reverse=True)


def make_tempdir(prefix: str, parent: Optional[str] = None) -> str:
    """Create a temp dir removed at exit (after unmounting anything in it)."""
    d = tempfile.mkdtemp(prefix=prefix, dir=parent)

    def _rm():
        if keep_temp():
            print(f"harness: keeping {d}", file=sys.stderr)
            return
        for mp in _mounts_under(d):
            subprocess.run(["umount", "-l", mp], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)

    register_cleanup(f"tempdir {d}", _rm)
    return d


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------

def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(pred: Callable[[], object], timeout: float, interval: float = 0.05,
             what: str = "condition"):
    """Poll ``pred`` until it returns a truthy value (returned) or time out."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def clean_env(**overrides: Optional[str]) -> dict:
    """os.environ without proxy variables, plus overrides (None deletes)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child if the harness process dies abruptly."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run(argv: list, *, check: bool = True, timeout: float = 120,
        env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run a command, capture text output; on check failure show the output."""
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                        stdin=subprocess.DEVNULL,
                        env=env if env is not None else clean_env())
    if check and cp.returncode != 0:
        raise RuntimeError(f"command failed ({cp.returncode}): {' '.join(map(str, argv))}\n"
                           f"stdout: {cp.stdout[-4000:]}\nstderr: {cp.stderr[-4000:]}")
    return cp


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


# --------------------------------------------------------------------------
# network namespace
# --------------------------------------------------------------------------

_netns_name: Optional[str] = None
_namespaces_before: dict[str, int] = {}


def _setns(fd: int, nstype: int) -> None:
    if hasattr(os, "setns"):  # python >= 3.12
        os.setns(fd, nstype)
        return
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter_private_netns(name_prefix: str = "pullgate-test") -> str:
    """Create netns ``<prefix>-<pid>`` with only ``lo`` (up) and move this
    process into it; returns the name. Deleted at exit.

    Only the network namespace changes (no ``ip netns exec``): the mount
    namespace, so /sys/fs/cgroup as runc/containerd need it, stays as is.
    Must be called before any thread is started: setns() moves only the
    calling thread; children forked from it inherit the namespace.
    """
    global _netns_name
    if _netns_name is not None:
        return _netns_name
    if threading.active_count() != 1:
        raise RuntimeError("enter_private_netns must run before any thread is started")
    name = f"{name_prefix}-{os.getpid()}"
    for kind in ("net", "mnt"):
        _namespaces_before[kind] = os.stat(f"/proc/self/ns/{kind}").st_ino
    run(["ip", "netns", "add", name])
    register_cleanup(f"netns {name}",
                     lambda: run(["ip", "netns", "delete", name], check=False))
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)
    run(["ip", "link", "set", "lo", "up"])
    links = run(["ip", "-o", "link", "show"]).stdout.strip().splitlines()
    names = [ln.split(":")[1].strip().split("@")[0] for ln in links]
    if names != ["lo"]:
        raise RuntimeError(f"netns {name} is not private: links {names}")
    _netns_name = name
    return name


def namespace_inode(kind: str = "net", pid: Union[int, str] = "self") -> int:
    """Inode of a process's namespace of ``kind`` (net, mnt, ...)."""
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def namespace_inode_before_netns(kind: str = "net") -> Optional[int]:
    """Inode of this process's ``kind`` namespace before enter_private_netns."""
    return _namespaces_before.get(kind)


class ConnectionCounter:
    """Counts TCP connection attempts (SYNs) to 127.0.0.1:PORT with an
    iptables rule in the private netns. Unlike an access log it also sees
    connections that never became a logged HTTP request (e.g. plain HTTP
    sent to a TLS port, which Go answers 400 without logging anything)."""

    def __init__(self, port: int) -> None:
        if _netns_name is None:
            raise RuntimeError("ConnectionCounter needs enter_private_netns() first "
                               "(it must never touch the host's firewall)")
        self.port = port
        self.tag = f"pullgate-syn-{port}"
        self._rule = ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), "--syn",
                      "-m", "comment", "--comment", self.tag, "-j", "ACCEPT"]
        run(["iptables", "-w", "-A", *self._rule])
        register_cleanup(f"iptables rule {self.tag}",
                         lambda: run(["iptables", "-w", "-D", *self._rule], check=False))

    def count(self) -> int:
        """SYNs seen so far on the port."""
        out = run(["iptables", "-w", "-L", "INPUT", "-n", "-v", "-x"]).stdout
        for line in out.splitlines():
            if f"/* {self.tag} */" in line:
                return int(line.split()[0])
        raise RuntimeError(f"iptables rule {self.tag} is gone")


# --------------------------------------------------------------------------
# managed processes
# --------------------------------------------------------------------------

class Service:
    """A long-running child process with stdout/stderr sent to files."""

    name = "service"

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.stdout_path = ""
        self.stderr_path = ""

    def _spawn(self, argv: list, workdir: str, env: Optional[dict] = None) -> None:
        self.stdout_path = os.path.join(workdir, f"{self.name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{self.name}.stderr")
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=env if env is not None else clean_env(), cwd=workdir,
                start_new_session=True, preexec_fn=_die_with_parent, close_fds=True)
        register_cleanup(f"{self.name} pid {self.proc.pid}", self.stop)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self, tail: int = 8000) -> str:
        """Last ``tail`` characters of the process's stderr."""
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-tail:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise (with its stderr) if the process has exited."""
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            raise RuntimeError(f"{self.name} exited with {code}; stderr:\n{self.stderr_text()}")

    def _wait_port(self, port: int, timeout: float) -> None:
        def ready():
            self.check_alive()
            return port_open(port)
        wait_for(ready, timeout, what=f"{self.name} to listen on 127.0.0.1:{port}")

    def stop(self, timeout: float = 10) -> Optional[int]:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        return self.proc.returncode


def read_proc_status(pid: int, field: str) -> int:
    """A kB value (e.g. VmHWM, VmRSS) from /proc/PID/status, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


# --------------------------------------------------------------------------
# test CA
# --------------------------------------------------------------------------

class TestCA:
    """A throwaway CA plus a server cert for 127.0.0.1 / localhost.

    Layout: ``cert_dir/ca.crt`` only (usable as skopeo --*-cert-dir and as
    containerd ``ca =``), ``private/ca.key``, ``server.crt``, ``server.key``.
    """

    __test__ = False  # not a unittest/pytest test class

    def __init__(self, workdir: Optional[str] = None, cn: str = "pullgate-test-ca") -> None:
        self.dir = workdir or make_tempdir("pgit-ca-")
        self.cert_dir = os.path.join(self.dir, "certs")
        os.makedirs(self.cert_dir, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "private"), mode=0o700, exist_ok=True)
        self.ca_cert = os.path.join(self.cert_dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "private", "ca.key")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-days", "2", "-subj", f"/CN={cn}",
             "-keyout", self.ca_key, "-out", self.ca_cert,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self.server_cert, self.server_key = self.issue(
            "server", ips=["127.0.0.1"], dns=["localhost"])

    def issue(self, name: str, ips: Iterable[str] = (), dns: Iterable[str] = (),
              client: bool = False) -> tuple[str, str]:
        """Issue a leaf cert signed by the CA; returns (cert path, key path)."""
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        crt = os.path.join(self.dir, f"{name}.crt")
        ext = os.path.join(self.dir, f"{name}.ext")
        sans = [f"IP:{i}" for i in ips] + [f"DNS:{d}" for d in dns]
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-subj", f"/CN={next(iter(ips), None) or next(iter(dns), name)}",
             "-keyout", key, "-out", csr])
        run(["openssl", "x509", "-req", "-sha256", "-days", "2", "-in", csr,
             "-CA", self.ca_cert, "-CAkey", self.ca_key,
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
             "-extfile", ext, "-out", crt])
        return crt, key

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext that trusts only this CA."""
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        return ctx


# --------------------------------------------------------------------------
# registry (distribution 2.8.2)
# --------------------------------------------------------------------------

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
                 token_server: Optional["TokenServer"] = None,
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


# --------------------------------------------------------------------------
# OCI image layouts
# --------------------------------------------------------------------------

class RandomBytes:
    """File content of ``size`` random bytes, generated while it is written."""

    def __init__(self, size: int) -> None:
        self.size = size


LayerFile = Union[bytes, RandomBytes]
LayerSpec = Union[LayerFile, dict]  # dict: path -> LayerFile | (LayerFile, mode)


class _RandomReader:
    """A read-only stream of ``size`` random bytes (never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        n = min(n, 1 << 20)
        self.left -= n
        return os.urandom(n)


class _HashingWriter(io.RawIOBase):
    """Writes to a file while computing sha256 and size."""

    def __init__(self, f) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.f.write(b)
        self.h.update(b)
        self.size += len(b)
        return len(b)


@dataclasses.dataclass
class Descriptor:
    """An OCI content descriptor (mediaType, digest, size)."""
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclasses.dataclass
class ImageInfo:
    """What build_oci_layout wrote: manifest, config and layer descriptors."""
    layout_dir: str
    tag: str
    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]

    @property
    def manifest_digest(self) -> str:
        return self.manifest.digest

    @property
    def layer_digests(self) -> list[str]:
        return [d.digest for d in self.layers]

    @property
    def blob_digests(self) -> list[str]:
        """Config and layer digests (what a pull fetches as blobs)."""
        return [self.config.digest] + self.layer_digests


def _write_blob(blobs_dir: str, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs_dir, digest.split(":")[1]), "wb") as f:
        f.write(data)
    return digest, len(data)


def _write_layer_tar(blobs_dir: str, files: dict) -> tuple[str, int]:
    """Write an uncompressed tar of ``files`` (path -> bytes | RandomBytes |
    (content, mode)) as a blob, streaming; returns (digest, size)."""
    tmp = os.path.join(blobs_dir, f".tmp-{os.getpid()}-{time.monotonic_ns()}")
    with open(tmp, "wb") as raw:
        hw = _HashingWriter(raw)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            dirs_done = set()
            for path in sorted(files):
                content = files[path]
                parts = path.strip("/").split("/")
                for i in range(1, len(parts)):
                    d = "/".join(parts[:i])
                    if d not in dirs_done:
                        dirs_done.add(d)
                        ti = tarfile.TarInfo(d)
                        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
                        tar.addfile(ti)
                mode = 0o644
                if isinstance(content, tuple):
                    content, mode = content
                ti = tarfile.TarInfo(path.strip("/"))
                ti.mode, ti.mtime = mode, 0
                if isinstance(content, RandomBytes):
                    ti.size = content.size
                    tar.addfile(ti, _RandomReader(content.size))
                else:
                    ti.size = len(content)
                    tar.addfile(ti, io.BytesIO(content))
    digest = "sha256:" + hw.h.hexdigest()
    os.replace(tmp, os.path.join(blobs_dir, digest.split(":")[1]))
    return digest, hw.size


def build_oci_layout(layout_dir: str, layers: list[LayerSpec], tag: str) -> ImageInfo:
    """Write an OCI image layout with uncompressed tar layers.

    Each element of ``layers`` is one layer: ``bytes`` or ``RandomBytes(n)``
    (a single file ``data/layer-<i>.bin``), or a dict path -> content, where
    content may also be ``(content, mode)``, e.g. ``(elf_bytes, 0o755)``.
    Layers are streamed to disk (a 64 MiB RandomBytes layer never sits in
    memory). Returns the descriptors; the manifest is tagged ``tag`` in
    index.json (``org.opencontainers.image.ref.name``).
    """
    blobs = os.path.join(layout_dir, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    layer_descs = []
    for i, spec in enumerate(layers):
        files = spec if isinstance(spec, dict) else {f"data/layer-{i}.bin": spec}
        digest, size = _write_layer_tar(blobs, files)
        layer_descs.append(Descriptor(OCI_LAYER_TAR, digest, size))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layer_descs]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"pullgate harness layer {i}"}
                    for i in range(len(layer_descs))],
    }
    cdigest, csize = _write_blob(blobs, json.dumps(config, separators=(",", ":")).encode())
    config_desc = Descriptor(OCI_CONFIG, cdigest, csize)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [d.to_json() for d in layer_descs],
    }
    mdigest, msize = _write_blob(blobs, json.dumps(manifest, separators=(",", ":")).encode())
    manifest_desc = Descriptor(OCI_MANIFEST, mdigest, msize)
    index_path = os.path.join(layout_dir, "index.json")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        index["manifests"] = [m for m in index.get("manifests", [])
                              if m.get("annotations", {}).get(
                                  "org.opencontainers.image.ref.name") != tag]
    entry = manifest_desc.to_json()
    entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index["manifests"].append(entry)
    with open(index_path, "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout_dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return ImageInfo(layout_dir, tag, manifest_desc, config_desc, layer_descs)


def push_layout(layout_dir: str, registry: Registry, repo: str, tag: str,
                ca_dir: Optional[str] = None, expected_digest: Optional[str] = None,
                timeout: float = 300) -> str:
    """``skopeo copy --preserve-digests oci:DIR:tag docker://HOST/repo:tag``.

    Uses registry credentials when it has htpasswd. Checks that the registry
    serves the manifest under the digest written in the layout (or
    ``expected_digest``) and returns that digest.
    """
    ca_dir = ca_dir or registry.ca.cert_dir
    work = make_tempdir("pgit-skopeo-")
    policy = os.path.join(work, "policy.json")
    with open(policy, "w") as f:
        json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    digestfile = os.path.join(work, "digest")
    argv = ["skopeo", "--policy", policy, "--tmpdir", work, "copy",
            "--preserve-digests", "--dest-cert-dir", ca_dir, "--digestfile", digestfile]
    if registry.credentials:
        argv += ["--dest-creds", ":".join(registry.credentials)]
    else:
        argv += ["--dest-no-creds"]
    argv += [f"oci:{layout_dir}:{tag}", f"docker://{registry.host}/{repo}:{tag}"]
    run(argv, timeout=timeout, env=clean_env(HOME=work, XDG_RUNTIME_DIR=work))
    if expected_digest is None:
        with open(os.path.join(layout_dir, "index.json")) as f:
            for m in json.load(f)["manifests"]:
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                    expected_digest = m["digest"]
    with open(digestfile) as f:
        pushed = f.read().strip()
    served = registry.head_manifest(repo, tag).header("Docker-Content-Digest")
    if not (pushed == served == expected_digest):
        raise RuntimeError(f"push changed the manifest digest: layout {expected_digest}, "
                           f"skopeo {pushed}, registry {served}")
    return pushed


# --------------------------------------------------------------------------
# containerd
# --------------------------------------------------------------------------

def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def write_no_bypass_hosts(hosts_dir: str, mirror_url: str) -> str:
    """Write HOSTS_DIR/_default/hosts.toml routing every registry through the
    mirror with no fallback (DESIGN §8); returns the file path."""
    d = os.path.join(hosts_dir, "_default")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "hosts.toml")
    with open(path, "w") as f:
        f.write(f'server = {_toml_str(mirror_url)}\n'
                'capabilities = ["pull", "resolve"]\n'
                '\n'
                '[host]\n')
    return path


def write_direct_hosts(hosts_dir: str, registry: Registry, ca_file: Optional[str] = None) -> str:
    """Write HOSTS_DIR/<host:port>/hosts.toml pulling straight from the
    registry over TLS, trusting ``ca_file`` (default: the registry's CA)."""
    d = os.path.join(hosts_dir, registry.host)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "hosts.toml")
    with open(path, "w") as f:
        f.write(f'server = {_toml_str(registry.url)}\n'
                f'ca = {_toml_str(ca_file or registry.ca.ca_cert)}\n'
                'capabilities = ["pull", "resolve"]\n'
                '\n'
                '[host]\n')  # containerd 1.6.20 ignores a file without a [host] table
    return path


def overlay_supported(probe_parent: str) -> bool:
    """Try an actual overlay mount under ``probe_parent`` (as containerd's
    overlayfs snapshotter does at init)."""
    base = tempfile.mkdtemp(prefix="overlay-probe-", dir=probe_parent)
    try:
        dirs = {k: os.path.join(base, k) for k in ("lower", "upper", "work", "merged")}
        for d in dirs.values():
            os.mkdir(d)
        cp = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}",
             dirs["merged"]], capture_output=True)
        if cp.returncode != 0:
            return False
        subprocess.run(["umount", dirs["merged"]], check=False)
        return True
    finally:
        shutil.rmtree(base, ignore_errors=True)


_UNSET = object()


class Containerd(Service):
    """containerd with private root, state and socket (never the system one).

    ``snapshotter``: "auto" (overlayfs if an overlay mount works here, else
    native), or a name. The CRI plugin is on with
    ``registry.config_path = hosts_dir`` (for CRI pulls). ``trust_ca_file``
    is exported as SSL_CERT_FILE (with an empty SSL_CERT_DIR) to the daemon
    and to ctr, so a pull that went *around* the mirror straight to a test
    registry would succeed — which is what a no-bypass test needs.
    """

    name = "containerd"
    DISABLED_PLUGINS = [
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]

    def __init__(self, hosts_dir: Optional[str] = None, snapshotter: str = "auto",
                 namespace: str = "pgtest", trust_ca_file: Optional[str] = None,
                 start: bool = True) -> None:
        super().__init__()
        self.dir = make_tempdir("pgit-containerd-")
        self.root = os.path.join(self.dir, "root")
        self.state = os.path.join(self.dir, "state")
        self.address = os.path.join(self.dir, "containerd.sock")
        self.namespace = namespace
        self.hosts_dir = hosts_dir or os.path.join(self.dir, "certs.d")
        os.makedirs(self.hosts_dir, exist_ok=True)
        for d in (self.root, self.state, os.path.join(self.dir, "cni-conf"),
                  os.path.join(self.dir, "cni-bin"), os.path.join(self.dir, "opt")):
            os.makedirs(d, exist_ok=True)
        if snapshotter == "auto":
            snapshotter = "overlayfs" if overlay_supported(self.dir) else "native"
        self.snapshotter = snapshotter
        self.trust_ca_file = trust_ca_file
        self.cert_dir_empty = os.path.join(self.dir, "no-system-cas")
        os.makedirs(self.cert_dir_empty, exist_ok=True)
        self.config_path = os.path.join(self.dir, "config.toml")
        with open(self.config_path, "w") as f:
            f.write(self._config())
        if start:
            self.start()

    def _config(self) -> str:
        q = _toml_str
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        return "\n".join([
            "version = 2",
            f"root = {q(self.root)}",
            f"state = {q(self.state)}",
            "disabled_plugins = [" + ", ".join(q(p) for p in self.DISABLED_PLUGINS) + "]",
            "",
            "[grpc]",
            f"  address = {q(self.address)}",
            "[ttrpc]",
            f"  address = {q(self.address + '.ttrpc')}",
            "[debug]",
            '  address = ""',
            '  level = "info"',
            "[metrics]",
            '  address = ""',
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {q(os.path.join(self.dir, 'opt'))}",
            cri,
            "  disable_tcp_service = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            "  enable_selinux = false",
            f"{cri[:-1]}.containerd]",
            f"  snapshotter = {q(self.snapshotter)}",
            f"{cri[:-1]}.cni]",
            f"  bin_dir = {q(os.path.join(self.dir, 'cni-bin'))}",
            f"  conf_dir = {q(os.path.join(self.dir, 'cni-conf'))}",
            f"{cri[:-1]}.registry]",
            f"  config_path = {q(self.hosts_dir)}",
            "",
        ])

    def _env(self, trust_ca_file) -> dict:
        if trust_ca_file:
            return clean_env(SSL_CERT_FILE=trust_ca_file, SSL_CERT_DIR=self.cert_dir_empty)
        return clean_env()

    def start(self, timeout: float = 30) -> None:
        """Start containerd and wait until ``ctr version`` answers."""
        self._spawn(["containerd", "--config", self.config_path, "--log-level", "info"],
                    self.dir, env=self._env(self.trust_ca_file))

        def ready():
            self.check_alive()
            return os.path.exists(self.address) and self.ctr(
                "version", check=False, timeout=5).returncode == 0
        wait_for(ready, timeout, interval=0.1, what="containerd socket")

    def ctr(self, *args: str, check: bool = True, timeout: float = 300,
            trust_ca_file=_UNSET) -> subprocess.CompletedProcess:
        """Run ``ctr --address SOCK -n NAMESPACE ARGS...``."""
        ca = self.trust_ca_file if trust_ca_file is _UNSET else trust_ca_file
        return run(["ctr", "--address", self.address, "-n", self.namespace, *args],
                   check=check, timeout=timeout, env=self._env(ca))

    def plugins(self) -> dict[str, str]:
        """Plugin "type.id" -> status (ok / error / skip) from ``ctr plugins ls``."""
        out = self.ctr("plugins", "ls").stdout.splitlines()
        result = {}
        for line in out[1:]:
            cols = line.split()
            if len(cols) >= 4:
                result[f"{cols[0]}.{cols[1]}"] = cols[-1]
        return result

    def pull(self, ref: str, hosts_dir: Optional[str] = None, platform: str = "linux/amd64",
             timeout: float = 600, trust_ca_file=_UNSET,
             extra_args: Iterable[str] = ()) -> subprocess.CompletedProcess:
        """``ctr images pull --hosts-dir HOSTS_DIR --platform P REF`` (no check)."""
        return self.ctr("images", "pull", "--hosts-dir", hosts_dir or self.hosts_dir,
                        "--platform", platform, "--snapshotter", self.snapshotter,
                        *extra_args, ref, check=False, timeout=timeout,
                        trust_ca_file=trust_ca_file)

    def images(self) -> dict[str, str]:
        """Image ref -> target digest from ``ctr images ls``."""
        out = self.ctr("images", "ls").stdout.splitlines()
        result = {}
        for line in out[1:]:
            cols = line.split()
            if len(cols) >= 3:
                result[cols[0]] = cols[2]
        return result

    def image_digest(self, ref: str) -> Optional[str]:
        """Target digest of ``ref`` in ``ctr images ls``, or None."""
        return self.images().get(ref)

    def content_digests(self) -> set[str]:
        """Digests of all committed content (``ctr content ls``)."""
        out = self.ctr("content", "ls").stdout.splitlines()
        return {line.split()[0] for line in out[1:] if line.startswith("sha256:")}

    def remove_image(self, ref: str) -> None:
        """Remove an image and prune its content (so a re-pull fetches again)."""
        self.ctr("images", "rm", "--sync", ref, check=False)
        self.ctr("content", "prune", "references", check=False)


# --------------------------------------------------------------------------
# pullgate
# --------------------------------------------------------------------------

def _yaml_scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # double-quoted YAML scalar


def to_yaml(obj, indent: int = 0) -> str:
    """Block-style YAML for dicts/lists of scalars (keys and strings quoted)."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = _yaml_scalar(str(k)) if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(k)) else k
            if isinstance(v, dict) and v:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(v, indent + 1).rstrip("\n"))
            elif isinstance(v, dict):
                lines.append(f"{pad}{key}: {{}}")
            elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
                lines.append(f"{pad}{key}:")
                for x in v:
                    sub = to_yaml(x, indent + 2).lstrip()
                    lines.append(f"{pad}  - {sub.rstrip()}")
            elif isinstance(v, list):
                lines.append(f"{pad}{key}: [" + ", ".join(_yaml_scalar(x) for x in v) + "]")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(v)}")
    else:
        lines.append(pad + _yaml_scalar(obj))
    return "\n".join(lines) + "\n"


def _deep_merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v
    return base


class Pullgate(Service):
    """The pullgate daemon: ``PULLGATE serve --config CONFIG_YAML``.

    ``allow_list`` becomes containerRegistry.privateBaseImageAllowList;
    ``registries`` maps registry key -> transport options (e.g. caFile);
    ``extra_config`` is merged into the config (credentialsFile, ...);
    ``env`` adds environment variables (e.g. CREDENTIALS_DIRECTORY).
    """

    name = "pullgate"

    def __init__(self, binary: str, allow_list: Iterable[str] = (),
                 registries: Optional[dict] = None, port: Optional[int] = None,
                 admin_port: Optional[int] = None, extra_config: Optional[dict] = None,
                 start: bool = True, env: Optional[dict] = None) -> None:
        super().__init__()
        self.binary = os.path.abspath(binary)
        self.env_overrides = dict(env or {})
        self.dir = make_tempdir("pgit-pullgate-")
        self.port = port or free_port()
        self.listen = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.listen}"
        self.decision_log_path = os.path.join(self.dir, "decisions.log")
        cfg: dict = {"listen": self.listen}
        if admin_port:
            cfg["adminListen"] = f"127.0.0.1:{admin_port}"
        self.admin_port = admin_port
        cfg["containerRegistry"] = {"privateBaseImageAllowList": list(allow_list)}
        if registries:
            cfg["registries"] = registries
        cfg["decisionLog"] = {"path": self.decision_log_path}
        _deep_merge(cfg, extra_config or {})
        self.config = cfg
        self.config_path = os.path.join(self.dir, "config.yaml")
        with open(self.config_path, "w") as f:
            f.write(to_yaml(cfg))
        if start:
            self.start()

    def start(self, timeout: float = 30) -> None:
        """Start pullgate and wait until its listen port accepts connections."""
        self._spawn([self.binary, "serve", "--config", self.config_path], self.dir,
                    env=clean_env(**self.env_overrides))
        self._wait_port(self.port, timeout)

    def reload(self, timeout: float = 10) -> None:
        """SIGHUP, then wait until stderr shows the reload finished (either
        ``reloaded`` or ``reload failed``)."""
        before = self.stderr_all().count("reload")
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.check_alive() or self.stderr_all().count("reload") > before,
                 timeout, what="pullgate to log its reload")

    def stderr_all(self) -> str:
        """pullgate's whole stderr (diagnostics) so far."""
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def decisions(self) -> list[dict]:
        """Parsed decision-log lines (an unterminated last line is skipped)."""
        try:
            with open(self.decision_log_path, "rb") as f:
                data = f.read().decode(errors="replace")
        except FileNotFoundError:
            return []
        lines = data.split("\n")
        complete, partial = lines[:-1], lines[-1]
        out = []
        for i, line in enumerate(complete):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AssertionError(
                        f"decision log line {i + 1} is not JSON: {line!r}") from exc
        del partial  # still being written
        return out

    def wait_decisions(self, pred: Callable[[list], bool], timeout: float = 5,
                       what: str = "decision-log lines") -> list[dict]:
        """Poll the decision log until ``pred(lines)`` holds; return the lines
        (raises AssertionError showing the log on timeout)."""
        try:
            wait_for(lambda: pred(self.decisions()), timeout, what=what)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; decision log:\n" +
                                 "\n".join(json.dumps(d) for d in self.decisions()[-30:]))
        return self.decisions()

    def peak_rss_kib(self) -> int:
        """VmHWM (peak resident set) of the daemon, KiB."""
        return read_proc_status(self.pid, "VmHWM")

    def rss_kib(self) -> int:
        """VmRSS (current resident set) of the daemon, KiB."""
        return read_proc_status(self.pid, "VmRSS")

    def get(self, path: str, method: str = "GET", ns: Optional[str] = None,
            headers: Optional[dict] = None, timeout: float = 30) -> HttpResponse:
        """Send one request to pullgate; ``ns`` is added as containerd does."""
        url = self.url + path
        if ns is not None:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"ns": ns})
        return http_request(method, url, headers=headers, timeout=timeout)


# --------------------------------------------------------------------------
# registry credentials and token auth
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# CRI (kubelet's view of containerd), without generated stubs
# --------------------------------------------------------------------------

def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field_bytes(field: int, data: bytes) -> bytes:
    """One length-delimited protobuf field (strings, bytes, messages)."""
    return _pb_varint(field << 3 | 2) + _pb_varint(len(data)) + data


def pb_parse(data: bytes) -> dict[int, list]:
    """Decode one protobuf message: field number -> list of values (varints
    as int, length-delimited as bytes; fixed32/64 as bytes)."""
    fields: dict[int, list] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value
    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            val = varint()
        elif wire == 2:
            n = varint()
            val, i = data[i:i + n], i + n
        elif wire == 1:
            val, i = data[i:i + 8], i + 8
        elif wire == 5:
            val, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(field, []).append(val)
    return fields


def cri_pull_image(socket_path: str, image: str, timeout: float = 300) -> str:
    """CRI v1 ``ImageService/PullImage`` over containerd's gRPC socket, as
    kubelet calls it; returns ``image_ref``. The two messages are encoded by
    hand (PullImageRequest{image: ImageSpec{image: 1} = 1},
    PullImageResponse{image_ref = 1}). Needs python3-grpcio (Debian package);
    raises grpc.RpcError when containerd reports an error."""
    import grpc  # python3-grpcio; imported here so the rest stays stdlib-only
    request = pb_field_bytes(1, pb_field_bytes(1, image.encode()))
    with grpc.insecure_channel(f"unix://{socket_path}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        call = channel.unary_unary("/runtime.v1.ImageService/PullImage",
                                   request_serializer=None, response_deserializer=None)
        response = call(request, timeout=timeout)
    refs = pb_parse(response).get(1, [b""])
    return refs[0].decode()


# --------------------------------------------------------------------------
# stub mirror (harness self-tests, no pullgate needed)
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# test runner
# --------------------------------------------------------------------------

def run_suite(suite, verbosity: int = 2) -> int:
    """Run a unittest suite on stdout, print ``N passed, N failed`` (plus
    ``, N skipped``) as the last line; return the exit code (0 = all passed)."""
    import unittest

    class CountingResult(unittest.TextTestResult):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.passed = 0

        def addSuccess(self, test):
            super().addSuccess(test)
            self.passed += 1

    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=verbosity,
                                     resultclass=CountingResult)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    line = f"{result.passed} passed, {failed} failed"
    if result.skipped:
        line += f", {len(result.skipped)} skipped"
    sys.stdout.flush()
    print(line, flush=True)
    return 0 if failed == 0 and result.passed > 0 else 1


def suite_main(module, netns_prefix: str,
               add_args: Optional[Callable[[object], None]] = None,
               before_tests: Optional[Callable[[object], None]] = None) -> int:
    """The command line every integration suite shares: ``--pullgate BINARY``,
    ``-k PATTERN``, ``--keep``, ``-q`` and the suite's own options
    (``add_args(parser)``). Sets ``module.PULLGATE_BINARY``, enters a private
    network namespace, calls ``before_tests(args)`` there, runs the module's
    tests and returns the exit status (``N passed, N failed`` is printed last)."""
    import argparse
    import unittest

    ap = argparse.ArgumentParser(description=(module.__doc__ or "").split("\n")[0])
    ap.add_argument("--pullgate", required=True, help="path to the pullgate binary")
    ap.add_argument("-k", action="append", default=None, metavar="PATTERN",
                    help="only run tests matching PATTERN (unittest -k)")
    ap.add_argument("--keep", action="store_true", help="keep temp dirs (PULLGATE_IT_KEEP=1)")
    ap.add_argument("-q", "--quiet", action="store_true")
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    module.PULLGATE_BINARY = os.path.abspath(args.pullgate)
    if args.keep:
        os.environ["PULLGATE_IT_KEEP"] = "1"
    print(f"network namespace: {enter_private_netns(netns_prefix)}")
    if before_tests:
        before_tests(args)
    loader = unittest.TestLoader()
    if args.k:
        loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in args.k]
    suite = loader.loadTestsFromModule(module)
    t0 = time.monotonic()
    rc = run_suite(suite, verbosity=1 if args.quiet else 2)
    print(f"total {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return rc

