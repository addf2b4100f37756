"""Helpers for integration/bench/run_bench.py (python3 stdlib only).

Builds on the integration/harness/ package (imported, never edited):
blob upload through the registry HTTP API, an nginx reverse proxy run from a
temp prefix, curl downloads (timed, or hashed while they stream), wrk runs
and the parsing of wrk's output.

Network rule: everything here talks only to 127.0.0.1 (inside the private
netns that run_bench.py enters first).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import resource
import signal
import subprocess
import time
import urllib.parse
from typing import Optional

import harness as h

MiB = 1 << 20


# --------------------------------------------------------------------------
# registry content
# --------------------------------------------------------------------------

def write_random_file(path: str, size: int) -> str:
    """Write ``size`` random bytes to ``path`` (``openssl rand``, far faster
    than getrandom here); return the file's sha256 digest."""
    h.run(["openssl", "rand", "-out", path, str(size)], timeout=300)
    if os.path.getsize(path) != size:
        raise RuntimeError(f"openssl rand wrote {os.path.getsize(path)} bytes, want {size}")
    return file_digest(path)


def file_digest(path: str) -> str:
    """sha256 digest of a file."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(4 * MiB)
            if not chunk:
                break
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def _registry_conn(reg: h.Registry, timeout: float = 300) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", reg.port, context=reg.ca.ssl_context(),
                                       timeout=timeout, blocksize=1 * MiB)


def upload_blob(reg: h.Registry, repo: str, digest: str, size: int,
                path: Optional[str] = None, data: Optional[bytes] = None) -> None:
    """Monolithic upload: POST /v2/<repo>/blobs/uploads/, then PUT
    <location>&digest=... with the whole body (streamed from ``path``, or
    ``data``). Checks 202/201 and that HEAD of the blob answers the size and
    digest."""
    auth = reg.auth_headers()
    conn = _registry_conn(reg)
    try:
        conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers={**auth, "Content-Length": "0"})
        r = conn.getresponse()
        r.read()
        if r.status != 202:
            raise RuntimeError(f"upload start for {repo}: {r.status} {r.reason}")
        loc = urllib.parse.urlsplit(r.getheader("Location"))
        target = loc.path + ("?" + loc.query + "&" if loc.query else "?") + \
            urllib.parse.urlencode({"digest": digest})
        headers = {**auth, "Content-Type": "application/octet-stream",
                   "Content-Length": str(size)}
        if path is not None:
            with open(path, "rb") as f:
                conn.request("PUT", target, body=f, headers=headers)
                r = conn.getresponse()
                body = r.read()
        else:
            conn.request("PUT", target, body=data, headers=headers)
            r = conn.getresponse()
            body = r.read()
        if r.status != 201:
            raise RuntimeError(f"upload of {digest}: {r.status} {r.reason} {body[:500]!r}")
        conn.request("HEAD", f"/v2/{repo}/blobs/{digest}", headers=auth)
        r = conn.getresponse()
        r.read()
        if (r.status != 200 or r.getheader("Docker-Content-Digest") != digest
                or r.getheader("Content-Length") != str(size)):
            raise RuntimeError(f"blob {digest} after upload: {r.status} "
                               f"{r.getheader('Docker-Content-Digest')} {r.getheader('Content-Length')}")
    finally:
        conn.close()


def push_manifest(reg: h.Registry, repo: str, tag: str, manifest: bytes,
                  media_type: str = h.OCI_MANIFEST) -> str:
    """PUT /v2/<repo>/manifests/<tag>; returns the digest the registry answered."""
    conn = _registry_conn(reg, timeout=60)
    try:
        conn.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                     headers={**reg.auth_headers(), "Content-Type": media_type,
                              "Content-Length": str(len(manifest))})
        r = conn.getresponse()
        body = r.read()
        if r.status != 201:
            raise RuntimeError(f"manifest push {repo}:{tag}: {r.status} {body[:500]!r}")
        digest = r.getheader("Docker-Content-Digest")
    finally:
        conn.close()
    want = "sha256:" + hashlib.sha256(manifest).hexdigest()
    if digest != want:
        raise RuntimeError(f"registry answered digest {digest}, manifest is {want}")
    return digest


def push_image(reg: h.Registry, repo: str, tag: str, layers: list) -> tuple:
    """An OCI image of already uploaded ``layers`` (dicts with ``digest`` and
    ``size``): uploads its config, pushes its manifest as ``tag``. Returns
    (manifest bytes, manifest digest, config digest)."""
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [b["digest"] for b in layers]},
    }, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    upload_blob(reg, repo, config_digest, len(config), data=config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": h.OCI_MANIFEST,
        "config": {"mediaType": h.OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": h.OCI_LAYER_TAR, "digest": b["digest"], "size": b["size"]}
                   for b in layers],
    }, separators=(",", ":")).encode()
    return manifest, push_manifest(reg, repo, tag, manifest), config_digest


# --------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------

class Nginx(h.Service):
    """nginx as a credential-injecting reverse proxy in front of a TLS
    registry, run from a temp prefix: ``nginx -p DIR -c nginx.conf -e
    DIR/error.log -g 'daemon off;'`` (pid, logs and temp dirs in DIR,
    access_log off). ``tuned`` adds worker_processes auto and 256k proxy
    buffers; both variants use proxy_buffering off, HTTP/1.1 upstream with a
    keepalive pool of 32 and verified upstream TLS."""

    def __init__(self, reg: h.Registry, tuned: bool, port: Optional[int] = None,
                 name: Optional[str] = None) -> None:
        super().__init__()
        self.name = name or ("nginx-tuned" if tuned else "nginx-default")
        self.tuned = tuned
        self.dir = h.make_tempdir(f"pgbench-{self.name}-")
        self.port = port or h.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf_path = os.path.join(self.dir, "nginx.conf")
        self.error_log = os.path.join(self.dir, "error.log")
        tmp = os.path.join(self.dir, "tmp")
        os.makedirs(tmp, exist_ok=True)
        if os.geteuid() == 0:
            # workers drop to nobody; they only need the temp dirs
            os.chmod(self.dir, 0o755)
            os.chown(tmp, 65534, 65534)
        auth_header = []
        if reg.credentials:
            user, password = reg.credentials
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            auth_header = [f'      proxy_set_header Authorization "Basic {basic}";']
        top = ["worker_processes auto;"] if tuned else []
        if os.geteuid() == 0:
            top.append("user nobody nogroup;")
        buffers = ["      proxy_buffer_size 256k;",
                   "      proxy_buffers 4 256k;",
                   "      proxy_busy_buffers_size 256k;"] if tuned else []
        conf = "\n".join(top + [
            f"pid {self.dir}/nginx.pid;",
            f"error_log {self.error_log} warn;",
            "events { worker_connections 4096; }",
            "http {",
            "  access_log off;",
            f"  client_body_temp_path {tmp}/body;",
            f"  proxy_temp_path {tmp}/proxy;",
            f"  fastcgi_temp_path {tmp}/fastcgi;",
            f"  uwsgi_temp_path {tmp}/uwsgi;",
            f"  scgi_temp_path {tmp}/scgi;",
            "  upstream registry {",
            f"    server 127.0.0.1:{reg.port};",
            "    keepalive 32;",
            "  }",
            "  server {",
            f"    listen 127.0.0.1:{self.port};",
            "    location / {",
            "      proxy_pass https://registry;",
            "      proxy_http_version 1.1;",
            '      proxy_set_header Connection "";',
            f'      proxy_set_header Host "127.0.0.1:{reg.port}";',
        ] + auth_header + [
            f"      proxy_ssl_trusted_certificate {reg.ca.ca_cert};",
            "      proxy_ssl_verify on;",
            # nginx checks the name with X509_check_host (no IP SANs): the
            # harness cert also carries DNS:localhost
            "      proxy_ssl_name localhost;",
            "      proxy_ssl_server_name off;",
            "      proxy_ssl_session_reuse on;",
            "      proxy_buffering off;",
        ] + buffers + [
            "    }",
            "  }",
            "}",
            ""])
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.conf_text = conf

    def _argv(self, *extra: str) -> list:
        return ["nginx", "-p", self.dir, "-c", self.conf_path, "-e", self.error_log, *extra]

    def start(self, timeout: float = 15) -> None:
        h.run(self._argv("-t", "-q"))
        self._spawn(self._argv("-g", "daemon off;"), self.dir)
        pgid = self.pid  # start_new_session: master and workers share this group

        def _kill_group():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # runs after stop() (cleanups run newest first): leftover workers die too
        h.register_cleanup(f"{self.name} process group {pgid}", _kill_group)
        self._wait_port(self.port, timeout)


# --------------------------------------------------------------------------
# curl
# --------------------------------------------------------------------------

CURL_BASE = ["curl", "--http1.1", "-s", "-S", "--noproxy", "*"]


def curl_timed(url: str, extra: list, max_time: float) -> dict:
    """Download ``url`` to /dev/null; returns rc, http code, size, speed
    (bytes/s, curl's speed_download), time_total and stderr."""
    argv = CURL_BASE + ["--max-time", str(int(max_time)), "-o", "/dev/null", "-w",
                        "%{http_code} %{size_download} %{speed_download} %{time_total}",
                        *extra, url]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=max_time + 30,
                        stdin=subprocess.DEVNULL, env=h.clean_env())
    return _curl_result(cp.returncode, cp.stdout, cp.stderr)


def _curl_result(rc: int, wout: str, err: str) -> dict:
    parts = wout.split()
    res = {"rc": rc, "http_code": 0, "size": 0, "speed": 0.0, "time": 0.0,
           "stderr": err.strip()[-500:]}
    if len(parts) >= 4:
        try:
            res.update(http_code=int(parts[-4]), size=int(parts[-3]),
                       speed=float(parts[-2]), time=float(parts[-1]))
        except ValueError:
            pass
    elif len(parts) == 2:
        try:
            res.update(http_code=int(parts[0]), size=int(parts[1]))
        except ValueError:
            pass
    return res


def parse_header_dump(path: str) -> dict:
    """Headers (lower-case names) of the last response in a curl -D file."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    if not blocks:
        return {}
    headers = {}
    for line in blocks[-1].split("\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return headers


def curl_hashed(url: str, extra: list, max_time: float,
                header_file: Optional[str] = None) -> dict:
    """Download ``url`` and hash the bytes as they arrive (curl -o - into
    this process). Returns rc, http code, size, sha256 digest, wall time
    (and the response headers when ``header_file`` is given)."""
    if header_file:
        extra = ["-D", header_file, *extra]
    argv = CURL_BASE + ["--max-time", str(int(max_time)), "-o", "-", "-w",
                        "%{stderr}\n%{http_code} %{size_download} %{speed_download} %{time_total}",
                        *extra, url]
    sha = hashlib.sha256()
    n = 0
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=h.clean_env())
    try:
        while True:
            chunk = p.stdout.read(1 * MiB)
            if not chunk:
                break
            sha.update(chunk)
            n += len(chunk)
        err = p.stderr.read().decode(errors="replace")
        rc = p.wait(max_time + 30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = err.rstrip("\n").split("\n")
    res = _curl_result(rc, lines[-1] if lines else "", "\n".join(lines[:-1]))
    res.update(bytes_hashed=n, digest="sha256:" + sha.hexdigest(),
               wall=time.monotonic() - t0)
    if header_file:
        res["headers"] = parse_header_dump(header_file)
    return res


# --------------------------------------------------------------------------
# CPU accounting
# --------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stats():
    """(pid, fields of /proc/PID/stat after the command name) of every live
    process: fields[0] = state (field 3), fields[2] = pgrp (field 5),
    fields[11]/[12] = utime/stime (fields 14/15)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(entry), stat[stat.rindex(")") + 2:].split()


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime (s) of the live processes in process group ``pgid``
    (a Service started with start_new_session: the daemon and its workers)."""
    total = sum(int(f[11]) + int(f[12]) for _, f in _proc_stats() if int(f[2]) == pgid)
    return total / _CLK_TCK


def machine_busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (/proc/stat:
    every state but idle and iowait, all CPUs)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLK_TCK


def own_tree_cpu_seconds() -> float:
    """CPU seconds of this process and everything it started: its own
    times, the children it has reaped (with theirs), and every live
    descendant (fields 14-17 of /proc/PID/stat: utime, stime and the times
    of the children it reaped)."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    stats = dict(_proc_stats())
    me = os.getpid()

    def descends(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            f = stats.get(pid)
            if f is None:
                return False
            pid = int(f[1])  # ppid
            if pid == me:
                return True
            seen += 1
        return False

    ticks = sum(int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
                for pid, f in stats.items() if pid != me and descends(pid))
    return total + ticks / _CLK_TCK


# --------------------------------------------------------------------------
# wrk and ab
# --------------------------------------------------------------------------

def write_wrk_script(path: str, method: str, headers: dict) -> str:
    """A wrk lua script that sets the method and headers."""
    lines = [f'wrk.method = "{method}"']
    for k, v in headers.items():
        lines.append(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(f"wrk latency {value!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_wrk(out: str) -> dict:
    """Requests/sec, requests, p50/p90/p99 latency (ms), non-2xx/3xx count and
    socket errors from wrk --latency output."""
    res: dict = {"rps": None, "requests": None, "p50_ms": None, "p90_ms": None,
                 "p99_ms": None, "non2xx": 0,
                 "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if m:
        res["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+(?:us|ms|s|m))\s*$", out, re.M)
        if m:
            res[key] = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    return res


def errors_total(res: dict) -> int:
    """Socket-level / failed-request count of a wrk or ab result."""
    return sum(res["socket_errors"].values())


def run_wrk(url: str, script: str, duration: int, threads: int = 2,
            connections: int = 32) -> dict:
    """``wrk -tT -cC -dDs --latency -s SCRIPT URL``; parsed result plus raw output."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
            "--timeout", "5s", "-s", script, url]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                        stdin=subprocess.DEVNULL, env=h.clean_env())
    res = parse_wrk(cp.stdout)
    res["tool"] = "wrk"
    res["rc"] = cp.returncode
    res["raw"] = cp.stdout + (("\n" + cp.stderr) if cp.stderr.strip() else "")
    return res


def parse_ab(out: str) -> dict:
    """ApacheBench output in the same shape as parse_wrk (latencies in ms,
    ab's resolution is 1 ms; failed requests split as ab reports them)."""
    res: dict = {"rps": None, "requests": None, "p50_ms": None, "p90_ms": None,
                 "p99_ms": None, "non2xx": 0,
                 "socket_errors": {"connect": 0, "receive": 0, "length": 0, "exceptions": 0}}
    m = re.search(r"Requests per second:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"Complete requests:\s+(\d+)", out)
    if m:
        res["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\d+)", out, re.M)
        if m:
            res[key] = float(m.group(1))
    m = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Failed requests:\s+(\d+)", out)
    failed = int(m.group(1)) if m else 0
    m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", out)
    if m:
        res["socket_errors"] = dict(zip(("connect", "receive", "length", "exceptions"),
                                        map(int, m.groups())))
    elif failed:
        res["socket_errors"]["exceptions"] = failed
    m = re.search(r"Keep-Alive requests:\s+(\d+)", out)
    res["keepalive_requests"] = int(m.group(1)) if m else 0
    return res


def run_ab_head(url: str, headers: dict, duration: int, connections: int = 32,
                basic_auth: Optional[str] = None) -> dict:
    """HEAD load with ApacheBench: ``ab -i -k -r -c C -t D`` (wrk 4.1 cannot
    do HEAD: its parser waits for a body a HEAD response never has, so it
    completes 0 requests)."""
    argv = ["ab", "-i", "-k", "-r", "-c", str(connections), "-t", str(duration),
            "-n", "100000000", "-s", "10", "-q"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    if basic_auth:
        argv += ["-A", basic_auth]
    cp = subprocess.run(argv + [url], capture_output=True, text=True, timeout=duration + 60,
                        stdin=subprocess.DEVNULL, env=h.clean_env())
    res = parse_ab(cp.stdout)
    res["tool"] = "ab"
    res["rc"] = cp.returncode
    res["raw"] = cp.stdout + (("\n" + cp.stderr) if cp.stderr.strip() else "")
    return res


# --------------------------------------------------------------------------
# CPU cost of SHA-256 on this machine
# --------------------------------------------------------------------------

GiB = 1 << 30


def sha256_cost(seconds: int = 3, block: int = 256 * 1024) -> dict:
    """``openssl speed -evp sha256 -seconds N -bytes BLOCK``: the user CPU
    (getrusage of the child) per GiB hashed. CPU time, not wall time, so a
    busy machine changes the result little."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cp = subprocess.run(["openssl", "speed", "-evp", "sha256", "-seconds", str(seconds),
                         "-bytes", str(block)], capture_output=True, text=True,
                        timeout=seconds + 60, stdin=subprocess.DEVNULL, env=h.clean_env())
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = cp.stdout + cp.stderr
    m = re.search(r"Doing sha256 for \d+s on \d+ size blocks: (\d+) sha256's in ([\d.]+)s", out)
    if cp.returncode != 0 or not m:
        raise RuntimeError(f"openssl speed failed ({cp.returncode}): {out[-1000:]}")
    hashed = int(m.group(1)) * block
    user = ru1.ru_utime - ru0.ru_utime
    total = user + ru1.ru_stime - ru0.ru_stime
    return {"bytes": hashed, "user_cpu_s": user, "openssl_cpu_s": float(m.group(2)),
            "cpu_s_per_gib": user / (hashed / GiB) if hashed else None,
            "user_sys_cpu_s_per_gib": total / (hashed / GiB) if hashed else None,
            "mib_per_cpu_s": hashed / MiB / user if user else None}


def pids_cpu_seconds(pids) -> float:
    """utime+stime (s) of the given live processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def group_pids(pgid: int) -> list:
    """Live processes of process group ``pgid``."""
    return [pid for pid, f in _proc_stats() if int(f[2]) == pgid]


# --------------------------------------------------------------------------
# distribution's proxy mode (pull-through cache) as a peer
# --------------------------------------------------------------------------

class ProxyRegistry(h.Registry):
    """Debian's docker-registry in proxy mode (``proxy: {remoteurl}``, plus
    ``username``/``password`` when the upstream has credentials) in front of
    ``upstream``, with a fresh storage dir (a cold cache), TLS with the test
    CA, no auth of its own. The upstream's CA is trusted through
    SSL_CERT_FILE (Go's crypto/x509).

    distribution 2.8's proxy hands its credentials only to a Bearer token
    realm (registry/proxy/proxyauth.go collects the realms of Bearer
    challenges): an htpasswd (Basic) upstream answers it 401, so the
    benchmark puts it in front of the registry without auth."""

    def __init__(self, upstream: h.Registry, name: str = "distribution-proxy") -> None:
        proxy = {"remoteurl": upstream.url}
        if upstream.credentials:
            proxy["username"], proxy["password"] = upstream.credentials
        super().__init__(upstream.ca, name=name, start=False, extra_config={
            "log": {"level": "warn", "accesslog": {"disabled": True}}, "proxy": proxy})
        self.no_cas = h.make_tempdir("pgbench-no-cas-", parent=self.dir)

    def start(self) -> None:
        self._spawn(["docker-registry", "serve", self.config_path], self.dir,
                    env=h.clean_env(SSL_CERT_FILE=self.ca.ca_cert, SSL_CERT_DIR=self.no_cas))
        self.wait_ready()


# --------------------------------------------------------------------------
# concurrent downloads and idle connections
# --------------------------------------------------------------------------

def curl_parallel(url: str, extra: list, streams: int, max_time: float) -> dict:
    """``streams`` downloads of ``url`` at once from one curl
    (``--parallel --parallel-immediate``: one connection each); returns the
    per-transfer results, the wall time and the aggregate bytes/s."""
    argv = CURL_BASE + ["--max-time", str(int(max_time)), "--parallel", "--parallel-immediate",
                        "--parallel-max", str(streams), "-w",
                        "%{http_code} %{size_download} %{speed_download} %{time_total}\\n", *extra]
    for _ in range(streams):
        argv += ["-o", "/dev/null", url]
    t0 = time.monotonic()
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=max_time + 60,
                        stdin=subprocess.DEVNULL, env=h.clean_env())
    wall = time.monotonic() - t0
    results = [_curl_result(0, line, "") for line in cp.stdout.splitlines() if line.strip()]
    while len(results) < streams:
        results.append(_curl_result(cp.returncode or 1, "", cp.stderr))
    total = sum(r["size"] for r in results)
    return {"rc": cp.returncode, "results": results, "wall_s": wall, "bytes": total,
            "aggregate_bytes_s": total / wall if wall > 0 else 0.0,
            "stderr": cp.stderr.strip()[-500:]}


def open_idle_connections(port: int, count: int, request: bytes, timeout: float = 60) -> list:
    """Open ``count`` keep-alive connections to 127.0.0.1:PORT, send
    ``request`` on each and read its whole answer (a small response whose
    header ends the read), leaving them open and idle. Returns the sockets
    (the caller closes them); raises if an answer is not a 200."""
    import socket
    import selectors
    socks = []
    sel = selectors.DefaultSelector()
    pending = {}
    deadline = time.monotonic() + timeout
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            s.setblocking(False)
            socks.append(s)
            pending[s] = b""
            sel.register(s, selectors.EVENT_READ)
            # keep a bounded number in flight: the listener's backlog stays small
            while len(pending) > 64:
                _drain(sel, pending, deadline)
        while pending:
            _drain(sel, pending, deadline)
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        sel.close()
    return socks


def _drain(sel, pending: dict, deadline: float) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{len(pending)} idle-connection requests unanswered")
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        data = s.recv(65536)
        if not data:
            raise RuntimeError("pullgate closed a connection before answering")
        pending[s] += data
        buf = pending[s]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            continue
        head = buf[:end].decode("latin-1")
        if not head.startswith("HTTP/1.1 200"):
            raise RuntimeError(f"idle-connection request answered {head.splitlines()[0]!r}")
        m = re.search(r"(?im)^content-length:\s*(\d+)", head)
        if len(buf) - end - 4 >= (int(m.group(1)) if m else 0):
            sel.unregister(s)
            del pending[s]
