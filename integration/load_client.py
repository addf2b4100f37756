"""The load client of test_load.py (python3 stdlib only): many keep-alive
connections on raw asyncio sockets, each sending a list of requests whose
answers are checked, plus what the load costs (CPU, RSS, file descriptors)
and a sampler thread.

Network rule: it dials 127.0.0.1 only, inside the private network namespace
of ``harness.enter_private_netns``. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import resource
import ssl
import sys
import threading
import time
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


# --------------------------------------------------------------------------
# asyncio load client
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Req:
    """One request and what its answer must be."""
    method: str
    target: str
    status: int
    body: Optional[bytes] = None          # expected body (GET); None: do not compare
    headers: dict = dataclasses.field(default_factory=dict)   # expected header values
    send_headers: dict = dataclasses.field(default_factory=dict)
    label: str = ""

    def wire(self, host: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host}",
                 "User-Agent: pullgate-load-test"]
        lines += [f"{k}: {v}" for k, v in self.send_headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclasses.dataclass
class LoadStats:
    requests: int = 0
    ok: int = 0
    failed: int = 0                 # requests that went wrong (errors holds the first 50)
    bytes: int = 0
    connections: int = 0
    errors: list = dataclasses.field(default_factory=list)
    latencies: list = dataclasses.field(default_factory=list)
    by_label: dict = dataclasses.field(default_factory=dict)

    def error(self, what: str) -> None:
        self.failed += 1
        if len(self.errors) < 50:
            self.errors.append(what)
        else:
            self.errors[-1] = f"... and more ({what})"

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(p / 100 * len(s)))]


async def read_response(reader: asyncio.StreamReader, method: str):
    """(status, headers{lower: value}, body) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if method == "HEAD" or status in (204, 304):
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        for _ in range(1_000_000):
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            body += await reader.readexactly(size + 2)
            del body[-2:]
        return status, headers, bytes(body)
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    return status, headers, await reader.read()


def check_answer(req: Req, status: int, headers: dict, body: bytes) -> Optional[str]:
    """None if the answer is what ``req`` expects, else why not."""
    if status != req.status:
        return f"{req.label or req.target}: status {status}, want {req.status}: {body[:200]!r}"
    for k, v in req.headers.items():
        if headers.get(k.lower()) != v:
            return f"{req.label or req.target}: header {k}={headers.get(k.lower())!r}, want {v!r}"
    if req.body is not None and body != req.body:
        return (f"{req.label or req.target}: body {len(body)} bytes sha256 "
                f"{hashlib.sha256(body).hexdigest()[:16]}, want {len(req.body)} bytes")
    return None


async def run_connection(port: int, reqs: list[Req], stats: LoadStats,
                         start: Optional[asyncio.Barrier] = None,
                         timeout: float = 60, tls: Optional[ssl.SSLContext] = None) -> None:
    """Open one connection (TLS with ``tls``), wait at ``start`` (if given),
    send ``reqs`` one after the other on it (keep-alive), check every
    answer. The first wrong answer ends the connection."""
    host = f"127.0.0.1:{port}"
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, limit=1 << 20, ssl=tls), timeout)
        stats.connections += 1
    except (OSError, asyncio.TimeoutError) as exc:
        stats.error(f"connect: {type(exc).__name__}: {exc}")
        if start is not None:
            await start.wait()
        return
    try:
        if start is not None:
            await asyncio.wait_for(start.wait(), timeout)
        for req in reqs:
            t0 = time.monotonic()
            stats.requests += 1
            writer.write(req.wire(host))
            status, headers, body = await asyncio.wait_for(read_response(reader, req.method), timeout)
            stats.latencies.append(time.monotonic() - t0)
            why = check_answer(req, status, headers, body)
            if why:
                stats.error(why)
                return
            stats.ok += 1
            stats.bytes += len(body)
            stats.by_label[req.label] = stats.by_label.get(req.label, 0) + 1
            if headers.get("connection", "").lower() == "close":
                stats.error(f"{req.label}: server closed a keep-alive connection")
                return
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError, ValueError, IndexError) as exc:
        stats.error(f"request: {type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (OSError, asyncio.TimeoutError):
                pass


async def run_load(port: int, plans: list[list[Req]], together: bool = True,
                   timeout: float = 60, tls: Optional[ssl.SSLContext] = None) -> LoadStats:
    """One connection per plan, all open at once when ``together`` (they
    first connect, then start sending together)."""
    stats = LoadStats()
    barrier = asyncio.Barrier(len(plans)) if together else None
    await asyncio.gather(*(run_connection(port, p, stats, barrier, timeout, tls) for p in plans))
    return stats


class Sampler:
    """Calls ``fn`` every ``every`` seconds in a thread; ``samples`` holds
    (seconds since start, value)."""

    def __init__(self, fn: Callable[[], float], every: float) -> None:
        self.fn, self.every = fn, every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(100_000):
            try:
                self.samples.append((time.monotonic() - self.t0, self.fn()))
            except Exception:  # the process went away: stop sampling
                return
            if self._stop.wait(self.every):
                return

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self.thread.join(10)
        return self.samples


# --------------------------------------------------------------------------
# file descriptors, memory
# --------------------------------------------------------------------------

def raise_nofile(want: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE (soft, and hard when root may) to at least
    ``want``; children (pullgate, the registry) inherit it. Returns the new
    (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft, hard
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want, want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kib(pid: int) -> int:
    return h.read_proc_status(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
