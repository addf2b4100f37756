"""Cleanup at exit, temp dirs, running commands and long-running child
processes (:class:`Service`)."""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Optional


_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")

_libc = ctypes.CDLL(None, use_errno=True)

PR_SET_PDEATHSIG = 1

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


def command_output(cp: subprocess.CompletedProcess, stdout_tail: int = 1500,
                   stderr_tail: int = 2500) -> str:
    """For a failure message: the tails of a finished command's stdout and
    stderr (text, as :func:`run` captures them), headed by its program name."""
    prog = os.path.basename(str(cp.args[0])) if cp.args else "command"
    return (f"\n--- {prog} stdout ---\n{cp.stdout[-stdout_tail:]}"
            f"\n--- {prog} stderr ---\n{cp.stderr[-stderr_tail:]}")


# --------------------------------------------------------------------------
# managed processes
# --------------------------------------------------------------------------

class Service:
    """A long-running child process with stdout/stderr sent to files."""

    name = "service"
    label: Optional[str] = None   # tells instances apart in messages: NAME[LABEL]

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

    def stderr_text(self, tail: Optional[int] = 8000) -> str:
        """Last ``tail`` characters of the process's stderr (None: all of it)."""
        try:
            with open(self.stderr_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        return text if tail is None else text[-tail:]

    @property
    def display_name(self) -> str:
        """``name`` or ``name[label]``."""
        return f"{self.name}[{self.label}]" if self.label else self.name

    def diagnostics(self, stderr_tail: int = 3000) -> str:
        """For a failure message: the tail of the process's stderr."""
        return f"\n--- {self.display_name} stderr (tail) ---\n{self.stderr_text(stderr_tail)}"

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
