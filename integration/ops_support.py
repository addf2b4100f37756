"""Helpers for test_ops.py (python3 stdlib only): the sd_notify protocol
receiver, a throttled blob reader on a raw socket, and small file helpers.
(The /metrics parser and the HTTP client are in the harness package.)

Nothing here dials anything but 127.0.0.1; the tests run inside the private
network namespace harness.enter_private_netns() creates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
import struct
import threading
import time
from typing import Callable, Optional

import harness as h

# --------------------------------------------------------------------------
# sd_notify receiver (what systemd does for Type=notify / WatchdogSec=)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Notification:
    """One datagram received on NOTIFY_SOCKET."""
    at: float                 # time.monotonic() when received
    pid: Optional[int]        # sender pid from SCM_CREDENTIALS (None if absent)
    fields: dict              # KEY -> VALUE of the newline-separated assignments
    raw: str


class NotifySocket:
    """A unix datagram socket at a filesystem path, like systemd's
    /run/systemd/notify, with SO_PASSCRED so every message carries the
    sender's pid. A thread collects the messages; ``env`` is what a service
    needs (NOTIFY_SOCKET)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[Notification] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        h.register_cleanup(f"notify socket {self.path}", self.close)

    @property
    def env(self) -> dict:
        return {"NOTIFY_SOCKET": self.path}

    def _run(self) -> None:
        creds_size = socket.CMSG_SPACE(struct.calcsize("3i"))
        while not self._stop.is_set():
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(65536, creds_size)
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, ctype, cdata in anc:
                if level == socket.SOL_SOCKET and ctype == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[:struct.calcsize("3i")])[0]
            text = data.decode(errors="replace")
            fields = {}
            for line in text.split("\n"):
                if "=" in line:
                    k, _, v = line.partition("=")
                    fields[k] = v
            with self._lock:
                self.messages.append(Notification(time.monotonic(), pid, fields, text))

    def snapshot(self) -> list[Notification]:
        with self._lock:
            return list(self.messages)

    def wait(self, pred: Callable[[list[Notification]], object], timeout: float,
             what: str) -> object:
        """Poll the received messages until ``pred(messages)`` is truthy."""
        try:
            return h.wait_for(lambda: pred(self.snapshot()), timeout, interval=0.02, what=what)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; received: "
                                 + repr([m.raw for m in self.snapshot()]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------
# a slow client, and a refused connect
# --------------------------------------------------------------------------

class ThrottledDownload:
    """GET on a raw socket with a small receive buffer, reading at most
    ``rate`` bytes/s in ``chunk``-sized reads, in a thread: a slow client
    whose download stays in flight for a while. Records the status, headers,
    the byte count and sha256 of the body, and when it finished."""

    def __init__(self, port: int, path: str, rate: float, chunk: int = 64 * 1024,
                 rcvbuf: int = 64 * 1024, timeout: float = 60) -> None:
        self.port, self.path, self.rate, self.chunk = port, path, rate, chunk
        self.rcvbuf, self.timeout = rcvbuf, timeout
        self.status: Optional[int] = None
        self.headers: dict = {}
        self.content_length: Optional[int] = None
        self.received = 0
        self.sha256 = ""
        self.error: Optional[str] = None
        self.eof_clean = False        # connection closed by the peer only after the body
        self.started = threading.Event()   # headers received
        self.finished_at: Optional[float] = None
        self._hasher = hashlib.sha256()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "ThrottledDownload":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self._download()
        except Exception as exc:  # recorded, asserted by the test
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.sha256 = "sha256:" + self._hasher.hexdigest()
            self.finished_at = time.monotonic()
            self.started.set()

    def _download(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Set before connect so the advertised window stays small.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.settimeout(self.timeout)
        s.connect(("127.0.0.1", self.port))
        try:
            s.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                      f"User-Agent: pullgate-ops-test\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = s.recv(4096)
                if not data:
                    raise ConnectionError(f"closed before the response header ({buf[:200]!r})")
                buf += data
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            self.content_length = int(self.headers.get("content-length", "-1"))
            self.started.set()
            t0 = time.monotonic()
            self._hasher.update(body)
            self.received = len(body)
            while self.received < self.content_length:
                ahead = self.received / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
                data = s.recv(min(self.chunk, self.content_length - self.received))
                if not data:
                    raise ConnectionError(f"connection closed after {self.received} of "
                                          f"{self.content_length} body bytes")
                self._hasher.update(data)
                self.received += len(data)
            # The response is complete; a keep-alive connection may stay open
            # (or be closed by a stopping server): either is fine.
            self.eof_clean = True
        finally:
            s.close()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def connect_refused(port: int) -> bool:
    """True if a TCP connect to 127.0.0.1:port is refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------

def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` atomically (a SIGHUP never sees half a file)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_lines(path: str) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return [ln for ln in f.read().split("\n") if ln.strip()]
    except FileNotFoundError:
        return []


def parse_unit(path: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as section -> [(key, value)] in file order
    (duplicate keys kept: several SystemCallFilter= lines are legal)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1]
                sections.setdefault(current, [])
                continue
            if current is None or "=" not in line:
                raise ValueError(f"{path}: unexpected line {raw!r}")
            k, _, v = line.partition("=")
            sections[current].append((k.strip(), v.strip()))
    return sections


def unit_values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def parse_timespan_seconds(text: str) -> float:
    """systemd time span ("30s", "1min 30s", "500ms", "2") in seconds."""
    units = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1, "sec": 1,
             "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
             "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    if not parts:
        raise ValueError(f"not a time span: {text!r}")
    for num, unit in parts:
        if unit and unit not in units:
            raise ValueError(f"unknown time unit {unit!r} in {text!r}")
        total += float(num) * units.get(unit or "s", 1)
    return total
