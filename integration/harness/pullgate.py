"""The pullgate daemon under test, and the YAML its config is written in."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.parse
from typing import Callable, Iterable, Optional

from .httpclient import HttpResponse, http_request
from .process import Service, clean_env, free_port, make_tempdir, read_proc_status, wait_for


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


def v2_path(repo: str, kind: str, ref: str, ns: Optional[str] = None) -> str:
    """``/v2/<repo>/<kind>/<ref>?ns=<ns>``: the request target containerd
    sends to a mirror for registry ``ns`` (``kind``: manifests or blobs)."""
    path = f"/v2/{repo}/{kind}/{ref}"
    return path if ns is None else path + "?" + urllib.parse.urlencode({"ns": ns})


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
        """Start pullgate and wait until it listens (see :meth:`wait_listening`)."""
        self._spawn([self.binary, "serve", "--config", self.config_path], self.dir,
                    env=clean_env(**self.env_overrides))
        self.wait_listening(timeout)

    def wait_listening(self, timeout: float = 30) -> None:
        """Wait until the listen port, and the admin port if configured,
        accept connections (pullgate opens the admin listener after the
        other, so a test reading /metrics right away must wait for it too)."""
        self._wait_port(self.port, timeout)
        if self.admin_port:
            self._wait_port(self.admin_port, timeout)

    def reload(self, timeout: float = 10) -> None:
        """SIGHUP, then wait until stderr shows the reload finished (either
        ``reloaded`` or ``reload failed``)."""
        before = self.stderr_all().count("reload")
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.check_alive() or self.stderr_all().count("reload") > before,
                 timeout, what="pullgate to log its reload")

    def stderr_all(self) -> str:
        """pullgate's whole stderr (diagnostics) so far."""
        return self.stderr_text(None)

    def diagnostics(self, stderr_tail: int = 3000, decisions: int = 15) -> str:
        """For a failure message: the tail of pullgate's stderr and its last
        ``decisions`` decision-log lines (0: none)."""
        out = super().diagnostics(stderr_tail)
        if decisions:
            lines = "\n".join(json.dumps(d) for d in self.decisions()[-decisions:])
            out += f"\n--- {self.display_name} decision log (tail) ---\n{lines}"
        return out

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
