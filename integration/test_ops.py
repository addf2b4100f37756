#!/usr/bin/python3
"""Operations side of pullgate: systemd unit, sd_notify + watchdog, SIGHUP
reload under load, decision-log reopen, /metrics, SIGTERM drain, and the
command line (check-config, explain, containerd-hosts, --version).

Everything runs in one private network namespace (only ``lo``):
  registry A  TLS, on the allowlist of every pullgate here
  registry B  TLS, added to / removed from the allowlist by reloads
  pullgate    several instances (one per concern), caFile for A and B
  containerd  ctr pulls through the reload-test pullgate (no-bypass hosts.toml)
systemd itself is not running here: the unit is checked with systemd-analyze,
and the notify/watchdog protocol with a NOTIFY_SOCKET this test binds. The
same daemon under a real systemd (systemd-nspawn --boot: active by READY=1,
reload with the same MainPID, the watchdog fed, stop with status 0) is
integration.package, part C. This test keeps what systemd does not show:
the messages themselves (READY=1 from the main pid, RELOADING=1 with
MONOTONIC_USEC then READY=1, STOPPING=1) and the spacing of the pings at a
2 s watchdog.

Run: /usr/bin/python3 integration/test_ops.py --pullgate build/pullgate \
         --unit build/pullgate.service [-k PATTERN] [--keep]
The last line printed is ``N passed, N failed``; exit status 0 only if all passed.
"""

import copy
import concurrent.futures
import json
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import ops_support as ops  # noqa: E402

MiB = 1 << 20
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_CONFIG = os.path.join(REPO_ROOT, "config", "config.yaml")
EXAMPLE_CREDENTIALS = os.path.join(REPO_ROOT, "config", "credentials.example.json")
MAX_EXPOSURE = 2.0
ACCEPT = {"Accept": h.CONTAINERD_MANIFEST_ACCEPT}

PULLGATE_BINARY = ""   # set by main()
UNIT_FILE = ""         # set by main()
E: dict = {}           # module fixtures, filled by setUpModule


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

def setUpModule():
    if not os.access(PULLGATE_BINARY, os.X_OK):
        raise FileNotFoundError(f"pullgate binary not found or not executable: {PULLGATE_BINARY}")
    t0 = time.monotonic()
    ca = h.TestCA()
    reg_a = h.Registry(ca, name="registry-a")
    reg_b = h.Registry(ca, name="registry-b")
    E.update(ca=ca, reg_a=reg_a, reg_b=reg_b, layouts=h.make_tempdir("pgit-ops-layouts-"))
    E["small"] = push_image(reg_a, "ops/small", [b"small layer one\n", {"etc/motd": b"hi\n"}])
    E["big"] = push_image(reg_a, "ops/big", [h.RandomBytes(16 * MiB)])
    E["bee"] = push_image(reg_b, "ops/bee", [b"registry B, allowed only sometimes\n"])
    E["beebig"] = push_image(reg_b, "ops/beebig", [h.RandomBytes(4 * MiB)])
    E["transport"] = {reg_a.host: {"caFile": ca.ca_cert}, reg_b.host: {"caFile": ca.ca_cert}}
    print(f"registry A {reg_a.host}, registry B {reg_b.host}; fixtures took "
          f"{time.monotonic() - t0:.1f}s")


def push_image(reg: h.Registry, repo: str, layers: list, tag: str = "v1") -> h.ImageInfo:
    """Build an OCI layout with ``layers`` and push it to ``reg`` as repo:tag."""
    info = h.build_oci_layout(os.path.join(E["layouts"], repo.replace("/", "_")), layers, tag)
    h.push_layout(info.layout_dir, reg, repo, tag)
    return info


def new_pullgate(allow_list=None, admin: bool = True, extra_config=None, env=None) -> h.Pullgate:
    """A pullgate allowing registry A (by default), trusting the test CA for A and B."""
    return h.Pullgate(PULLGATE_BINARY,
                      allow_list=[E["reg_a"].host] if allow_list is None else allow_list,
                      registries=E["transport"], admin_port=h.free_port() if admin else None,
                      extra_config=extra_config, env=env)


def blob_objects(img: h.ImageInfo) -> list[tuple[str, str, str, int]]:
    """(kind, reference, expected digest, expected size) of everything a pull GETs."""
    objs = [("manifests", img.tag, img.manifest_digest, img.manifest.size),
            ("manifests", img.manifest_digest, img.manifest_digest, img.manifest.size)]
    objs.append(("blobs", img.config.digest, img.config.digest, img.config.size))
    objs += [("blobs", d.digest, d.digest, d.size) for d in img.layers]
    return objs


def hup(pg: h.Pullgate, timeout: float = 10) -> str:
    """SIGHUP and wait for the outcome in stderr: "ok" or "failed"."""
    err = pg.stderr_all()
    ok0, bad0 = err.count(" reloaded "), err.count("reload failed")
    pg.proc.send_signal(signal.SIGHUP)

    def outcome():
        pg.check_alive()
        e = pg.stderr_all()
        if e.count("reload failed") > bad0:
            return "failed"
        if e.count(" reloaded ") > ok0:
            return "ok"
        return None
    return h.wait_for(outcome, timeout, interval=0.02, what="pullgate to log its reload")


def write_config(pg: h.Pullgate, cfg: dict) -> None:
    ops.write_atomic(pg.config_path, h.to_yaml(cfg))


def with_allow_list(pg: h.Pullgate, entries: list) -> dict:
    cfg = copy.deepcopy(pg.config)
    cfg["containerRegistry"] = {"privateBaseImageAllowList": list(entries)}
    return cfg


def cli(*args: str, env=None, timeout: float = 30):
    """Run the pullgate binary; never raises on a non-zero exit."""
    return h.run([PULLGATE_BINARY, *args], check=False, timeout=timeout,
                 env=env if env is not None else h.clean_env(CREDENTIALS_DIRECTORY=None))


def project_version() -> str:
    with open(os.path.join(REPO_ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*pullgate\s+VERSION\s+([0-9][0-9.]*)", f.read())
    assert m, "project(pullgate VERSION ...) not found in CMakeLists.txt"
    return m.group(1)


def explain_fields(stdout: str) -> dict:
    """``key:  value`` lines of `pullgate explain` as a dict."""
    out = {}
    for line in stdout.splitlines():
        k, sep, v = line.partition(":")
        if sep and re.fullmatch(r"[a-z ]+", k):
            out[k.strip()] = v.strip()
    return out


class OpsTest(unittest.TestCase):
    maxDiff = 4000


# --------------------------------------------------------------------------
# 1. systemd unit
# --------------------------------------------------------------------------

class A_SystemdUnit(OpsTest):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(UNIT_FILE):
            raise FileNotFoundError(f"configured unit not found: {UNIT_FILE} (run cmake)")
        cls.unit = ops.parse_unit(UNIT_FILE)
        cls.dir = h.make_tempdir("pgit-unit-")

    def exec_binary(self) -> str:
        starts = ops.unit_values(self.unit, "Service", "ExecStart")
        self.assertEqual(len(starts), 1, starts)
        return starts[0].split()[0]

    def test_a1_systemd_analyze_verify(self):
        copy_path = os.path.join(self.dir, "pullgate.service")
        shutil.copy(UNIT_FILE, copy_path)
        exec_bin = self.exec_binary()
        cp = h.run(["systemd-analyze", "verify", copy_path], check=False)
        out = (cp.stdout + cp.stderr).strip()
        if cp.returncode != 0:
            # The configured ExecStart= path (e.g. /usr/local/bin/pullgate) is
            # only there after `cmake --install`; verify rejects a missing
            # executable. Accept that one complaint only, then verify a copy
            # pointing at the binary just built.
            self.assertFalse(os.access(exec_bin, os.X_OK),
                             f"verify failed although {exec_bin} exists:\n{out}")
            other = [ln for ln in out.splitlines() if ln.strip() and not
                     (f"Command {exec_bin} is not executable" in ln)]
            self.assertEqual(other, [], f"systemd-analyze verify complains:\n{out}")
            with open(UNIT_FILE) as f:
                text = f.read()
            ops.write_atomic(copy_path, text.replace(exec_bin + " ", PULLGATE_BINARY + " "))
            cp = h.run(["systemd-analyze", "verify", copy_path], check=False)
            out = (cp.stdout + cp.stderr).strip()
            print(f"\n  (verify: {exec_bin} is not installed; verified a copy using "
                  f"{PULLGATE_BINARY})", end=" ")
        self.assertEqual(cp.returncode, 0, out)
        self.assertEqual([ln for ln in out.splitlines() if "pullgate" in ln], [],
                         f"systemd-analyze verify warns:\n{out}")

    def test_a2_security_exposure_at_most_2(self):
        copy_path = os.path.join(self.dir, "pullgate.service")
        shutil.copy(UNIT_FILE, copy_path)
        cp = h.run(["systemd-analyze", "security", "--offline=yes", copy_path], check=False)
        m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", cp.stdout)
        self.assertIsNotNone(m, "no overall exposure in:" + h.command_output(cp))
        exposure = float(m.group(1))
        print(f"\n  systemd-analyze security exposure {exposure}", end=" ")
        self.assertLessEqual(exposure, MAX_EXPOSURE,
                             "the unit is not hardened enough:\n" + cp.stdout[-4000:])

    def test_a3_unit_keys(self):
        svc = lambda k: ops.unit_values(self.unit, "Service", k)  # noqa: E731
        self.assertEqual(svc("Type"), ["notify"])
        self.assertIn(svc("NotifyAccess"), ([], ["main"]), "NotifyAccess= must allow the main pid")
        reload_cmds = svc("ExecReload")
        self.assertEqual(len(reload_cmds), 1, reload_cmds)
        self.assertRegex(reload_cmds[0], r"(-HUP|-s\s*HUP|--signal[= ]HUP|-SIGHUP)\b")
        self.assertIn("$MAINPID", reload_cmds[0])
        start = svc("ExecStart")[0].split()
        self.assertEqual(start[1:3], ["serve", "--config"], start)
        watchdog = svc("WatchdogSec")
        self.assertEqual(len(watchdog), 1, watchdog)
        self.assertGreater(ops.parse_timespan_seconds(watchdog[0]), 0)
        creds = svc("LoadCredential")
        self.assertEqual(len(creds), 1, creds)
        name, sep, source = creds[0].partition(":")
        self.assertTrue(sep and name and source.startswith("/"), creds)
        # The credential source is the example config's credentialsFile, and
        # the logs directory is where the example config's decision log goes.
        with open(EXAMPLE_CONFIG) as f:
            example = f.read()
        m = re.search(r"^credentialsFile:\s*(\S+)", example, re.M)
        self.assertIsNotNone(m)
        self.assertEqual(source, m.group(1))
        m = re.search(r"^\s+path:\s*(\S+)", example[example.index("decisionLog:"):], re.M)
        self.assertEqual(os.path.dirname(m.group(1)),
                         "/var/log/" + svc("LogsDirectory")[0].split()[0])
        # systemd must give the drain time: TimeoutStopSec > shutdownGraceSeconds default.
        grace = re.search(r"shutdownGraceSeconds:\s*(\d+)", example)
        self.assertIsNotNone(grace, "example config lists no shutdownGraceSeconds default")
        self.assertGreater(ops.parse_timespan_seconds(svc("TimeoutStopSec")[0]),
                           float(grace.group(1)))

    def test_a4_load_credential_name_is_what_pullgate_reads(self):
        """$CREDENTIALS_DIRECTORY/<LoadCredential name> wins over credentialsFile."""
        name = ops.unit_values(self.unit, "Service", "LoadCredential")[0].partition(":")[0]
        d = h.make_tempdir("pgit-credsdir-")
        creds_dir = os.path.join(d, "credentials")
        h.write_docker_config(os.path.join(creds_dir, name),
                              {"from-credentials-dir.example": {"auth": h.basic_auth_value("u", "p")}})
        h.write_docker_config(os.path.join(d, "file.json"),
                              {"from-credentials-file.example": {"auth": h.basic_auth_value("u", "p")}})
        cfg = os.path.join(d, "config.yaml")
        with open(cfg, "w") as f:
            f.write(h.to_yaml({"listen": "127.0.0.1:5000",
                               "credentialsFile": os.path.join(d, "file.json")}))
        cp = cli("check-config", "--config", cfg,
                 env=h.clean_env(CREDENTIALS_DIRECTORY=creds_dir))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("from-credentials-dir.example", cp.stdout)
        self.assertNotIn("from-credentials-file.example", cp.stdout)
        cp = cli("check-config", "--config", cfg)   # without it: the file
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("from-credentials-file.example", cp.stdout)


# --------------------------------------------------------------------------
# 2. Type=notify and the watchdog, with this test as "systemd"
# --------------------------------------------------------------------------

class B_NotifyAndWatchdog(OpsTest):
    def test_b_ready_watchdog_reloading_stopping(self):
        watchdog_usec = 2_000_000
        sock = ops.NotifySocket(h.make_tempdir("pgit-notify-"))
        # WATCHDOG_PID is left out: the child's pid is unknown before it
        # starts, and sd_watchdog_enabled() accepts an absent WATCHDOG_PID.
        pg = new_pullgate(env={**sock.env, "WATCHDOG_USEC": str(watchdog_usec),
                               "WATCHDOG_PID": None})
        ready = sock.wait(lambda ms: [m for m in ms if m.fields.get("READY") == "1"], 10,
                          "READY=1")[0]
        self.assertEqual(ready.pid, pg.pid, "READY=1 must come from the main pid (NotifyAccess=main)")
        r = h.http_request("GET", f"http://127.0.0.1:{pg.admin_port}/readyz")
        self.assertEqual(r.status, 200, r.body)

        # Watchdog: at least 2 pings within 3 s, never further apart than WATCHDOG_USEC.
        t0 = time.monotonic()
        time.sleep(3.0)
        pings = [m for m in sock.snapshot() if m.fields.get("WATCHDOG") == "1" and m.at >= t0]
        self.assertGreaterEqual(len(pings), 2, [m.raw for m in sock.snapshot()])
        self.assertTrue(all(m.pid == pg.pid for m in pings))
        gaps = [b.at - a.at for a, b in zip(pings, pings[1:])]
        self.assertLess(max(gaps), watchdog_usec / 1e6, f"watchdog gaps {gaps}")
        print(f"\n  {len(pings)} watchdog pings in 3 s, max gap {max(gaps):.2f}s", end=" ")

        def reload_sequence(what: str) -> None:
            n = len(sock.snapshot())
            sent_at = time.monotonic()
            pg.proc.send_signal(signal.SIGHUP)

            def done(ms):
                new = ms[n:]
                rel = [i for i, m in enumerate(new) if m.fields.get("RELOADING") == "1"]
                rdy = [i for i, m in enumerate(new) if m.fields.get("READY") == "1"]
                return rel and [i for i in rdy if i > rel[0]] and (new, rel[0])
            new, i = sock.wait(done, 10, f"RELOADING=1 then READY=1 after {what}")
            reloading = new[i]
            self.assertEqual(reloading.pid, pg.pid)
            self.assertIn("MONOTONIC_USEC", reloading.fields, reloading.raw)
            usec = int(reloading.fields["MONOTONIC_USEC"])
            # CLOCK_MONOTONIC, as systemd compares it: between the signal and receipt.
            self.assertGreaterEqual(usec, int(sent_at * 1e6) - 1000, reloading.raw)
            self.assertLessEqual(usec, int(reloading.at * 1e6) + 1000, reloading.raw)

        reload_sequence("a good SIGHUP")
        self.assertEqual(hup_outcome_count(pg), (1, 0))
        # A failed reload must still end the RELOADING state with READY=1.
        with open(pg.config_path, "a") as f:
            f.write("containerRegistry: [this is: not valid\n")
        reload_sequence("a SIGHUP with a broken config")
        h.wait_for(lambda: hup_outcome_count(pg) == (1, 1), 5, what="reload failure logged")

        n = len(sock.snapshot())
        pg.proc.send_signal(signal.SIGTERM)
        stopping = sock.wait(lambda ms: [m for m in ms[n:] if m.fields.get("STOPPING") == "1"],
                             10, "STOPPING=1")[0]
        self.assertEqual(stopping.pid, pg.pid)
        self.assertEqual(pg.proc.wait(15), 0, pg.stderr_text())


def hup_outcome_count(pg: h.Pullgate) -> tuple[int, int]:
    err = pg.stderr_all()
    return err.count(" reloaded "), err.count("reload failed")


# --------------------------------------------------------------------------
# 3. reload under load
# --------------------------------------------------------------------------

class LoadWorkers:
    """HTTP clients fetching every manifest and blob of registry A's images
    through pullgate, verifying status, length and sha256, plus a thread
    pulling with containerd; all until stop()."""

    def __init__(self, pg: h.Pullgate, ctrd: h.Containerd, http_threads: int = 3) -> None:
        self.pg, self.ctrd = pg, ctrd
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.ok_requests = 0
        self.ok_bytes = 0
        self.ctr_pulls = 0
        self.objects = [(repo, o) for repo, img in (("ops/small", E["small"]), ("ops/big", E["big"]))
                        for o in blob_objects(img)]
        self.threads = [threading.Thread(target=self._http, args=(i,), daemon=True)
                        for i in range(http_threads)]
        self.threads.append(threading.Thread(target=self._ctr, daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(120)
            if t.is_alive():
                self.failures.append(f"{t.name} did not stop")

    def _fail(self, msg: str) -> None:
        with self.lock:
            self.failures.append(msg)

    def _http(self, index: int) -> None:
        fresh_each_time = index % 3 == 2   # one thread opens a new connection per request
        client = h.HttpConnection(self.pg.port)
        reg = E["reg_a"]
        i = index
        while not self.stop_event.is_set():
            repo, (kind, ref, digest, size) = self.objects[i % len(self.objects)]
            i += 1
            path = h.v2_path(repo, kind, ref, reg.host)
            try:
                r = client.request("GET", path, headers=ACCEPT, keep_body=512)
            except Exception as exc:
                self._fail(f"GET {path}: {type(exc).__name__}: {exc}")
                client.close()
                continue
            if fresh_each_time:
                client.close()
            if (r.status, r.nbytes, r.sha256, r.content_length) != (200, size, digest, size):
                self._fail(f"GET {path}: status {r.status}, {r.nbytes} bytes (want {size}), "
                           f"{r.sha256} (want {digest}), Content-Length {r.content_length}, "
                           f"body {r.body_head[:200]!r}")
                continue
            with self.lock:
                self.ok_requests += 1
                self.ok_bytes += r.nbytes
        client.close()

    def _ctr(self) -> None:
        ref = f"{E['reg_a'].host}/ops/big:v1"
        while not self.stop_event.is_set():
            cp = self.ctrd.pull(ref, timeout=120)
            if cp.returncode != 0:
                self._fail(f"ctr pull {ref}: {cp.stderr[-800:]}")
            elif self.ctrd.image_digest(ref) != E["big"].manifest_digest:
                self._fail(f"ctr pull {ref}: image digest {self.ctrd.image_digest(ref)}")
            else:
                with self.lock:
                    self.ctr_pulls += 1
            self.ctrd.remove_image(ref)


class C_ReloadUnderLoad(OpsTest):
    @classmethod
    def setUpClass(cls):
        # SIGHUP reloads, counted exactly: the file watch (its own suite,
        # test_reload_watch.py) would add reloads of its own for the rewrites.
        cls.pg = new_pullgate(extra_config={"reload": {"watchFiles": False}})
        hosts = h.make_tempdir("pgit-ops-hosts-")
        h.write_no_bypass_hosts(hosts, cls.pg.url)
        cls.ctrd = h.Containerd(hosts_dir=hosts)

    def tearDown(self):
        if not self.pg.alive():
            self.fail(f"pullgate exited (code {self.pg.proc.returncode}){self.pg.diagnostics()}")

    def assert_b(self, allowed: bool, what: str) -> None:
        """GET B's manifest on a new connection: 200 + right digest, or 403 naming B."""
        r = self.pg.get(h.v2_path("ops/bee", "manifests", "v1", E["reg_b"].host), headers=ACCEPT)
        if allowed:
            self.assertEqual((r.status, r.sha256), (200, E["bee"].manifest_digest),
                             f"{what}: B must be allowed now; {r.body_head[:300]!r}"
                             + self.pg.diagnostics())
        else:
            self.assertEqual(r.status, 403, f"{what}: B must be denied now; {r.body_head[:300]!r}"
                             + self.pg.diagnostics())
            self.assertIn(E["reg_b"].host, r.body_head.decode(errors="replace"))

    def test_c1_reload_under_load(self):
        pg, reg_a, reg_b = self.pg, E["reg_a"], E["reg_b"]
        only_a = with_allow_list(pg, [reg_a.host])
        a_and_b = with_allow_list(pg, [reg_a.host, reg_b.host])
        # Invalid files whose allowlist, if applied, would change B's state.
        broken_yaml = h.to_yaml(only_a) + "containerRegistry: {privateBaseImageAllowList: [\n"
        bad_entry = with_allow_list(pg, [reg_a.host, reg_b.host, "https://"])
        # (what, file, B allowed afterwards, outcome, the error names)
        steps = [("add B", a_and_b, True, "ok", None),
                 ("broken YAML (would remove B)", broken_yaml, True, "failed",
                  f"{pg.config_path}:{broken_yaml.count(chr(10)) + 1}:"),
                 ("remove B", only_a, False, "ok", None),
                 ("invalid entry (would add B)", bad_entry, False, "failed",
                  "containerRegistry.privateBaseImageAllowList[2]"),
                 ("add B", a_and_b, True, "ok", None),
                 ("remove B", only_a, False, "ok", None),
                 ("add B", a_and_b, True, "ok", None),
                 ("remove B", only_a, False, "ok", None)]
        m0 = h.scrape_metrics(pg.admin_port)
        failed0 = pg.stderr_all().count("reload failed")
        since = len(pg.decisions())
        self.assert_b(False, "before any reload")
        load = LoadWorkers(pg, self.ctrd)
        t_start = time.monotonic()
        load.start()
        timings = []
        try:
            time.sleep(1.0)
            for what, cfg, b_allowed, expect, names in steps:
                if isinstance(cfg, dict):
                    write_config(pg, cfg)
                else:
                    ops.write_atomic(pg.config_path, cfg)
                t = time.monotonic()
                outcome = hup(pg)
                timings.append(time.monotonic() - t)
                self.assertEqual(outcome, expect, f"reload with {what}" + pg.diagnostics())
                if names:
                    last = [ln for ln in pg.stderr_all().splitlines() if "reload failed" in ln][-1]
                    self.assertIn(names, last, f"the reload error should name {names}")
                # The NEXT request decides by the new allowlist (a new
                # connection here; idle keep-alive connections: test_c3).
                self.assert_b(b_allowed, f"new connection after {what}")
                time.sleep(0.9)
        finally:
            load.stop()
        took = time.monotonic() - t_start
        print(f"\n  {len(steps)} reloads in {took:.1f}s under load: {load.ok_requests} verified "
              f"GETs ({load.ok_bytes / MiB:.0f} MiB), {load.ctr_pulls} ctr pulls; "
              f"SIGHUP->logged max {max(timings) * 1000:.0f} ms", end=" ")
        self.assertEqual(load.failures[:10], [], pg.diagnostics())
        self.assertGreaterEqual(load.ctr_pulls, 2, "containerd pulls did not run during the reloads")
        self.assertGreater(load.ok_bytes, 8 * 16 * MiB, "too little load to mean anything")

        # Every request to A during the reloads was allowed and answered 200.
        lines = [d for d in pg.decisions()[since:] if d.get("registry") == reg_a.host]
        bad = [d for d in lines if (d.get("decision"), d.get("status")) != ("allow", 200)]
        self.assertEqual(bad[:5], [], "requests to A failed during reloads")
        self.assertGreaterEqual(len(lines), load.ok_requests)

        m1 = h.scrape_metrics(pg.admin_port)
        n_ok = sum(1 for s in steps if s[3] == "ok")
        n_bad = len(steps) - n_ok
        for result, n in (("success", n_ok), ("failure", n_bad)):
            delta = (m1.value("pullgate_config_reloads_total", result=result)
                     - m0.value("pullgate_config_reloads_total", result=result))
            self.assertEqual(delta, n, f"pullgate_config_reloads_total{{result={result}}}")
        err = pg.stderr_all()
        self.assertEqual(err.count("reload failed") - failed0, n_bad, err[-3000:])

    def test_c2_request_in_flight_finishes_on_old_snapshot(self):
        pg, reg_a, reg_b, img = self.pg, E["reg_a"], E["reg_b"], E["beebig"]
        write_config(pg, with_allow_list(pg, [reg_a.host, reg_b.host]))
        self.assertEqual(hup(pg), "ok")
        layer = img.layers[0]
        path = h.v2_path("ops/beebig", "blobs", layer.digest, reg_b.host)
        dl = ops.ThrottledDownload(pg.port, path, rate=2 * MiB).start()
        self.assertTrue(dl.started.wait(10), "no response header for B's blob")
        self.assertEqual(dl.status, 200, dl.error)
        # Remove B while the download is in flight.
        write_config(pg, with_allow_list(pg, [reg_a.host]))
        self.assertEqual(hup(pg), "ok")
        self.assert_b(False, "new request during the in-flight download")
        self.assertIsNone(dl.finished_at, "the download finished too early to show anything; "
                          f"received {dl.received} of {layer.size}")
        self.assertTrue(dl.join(30), "download did not finish")
        self.assertIsNone(dl.error, f"in-flight download broke at the reload: {dl.error}")
        self.assertEqual((dl.received, dl.sha256), (layer.size, layer.digest))
        lines = pg.wait_decisions(lambda ls: any(d.get("reference") == layer.digest for d in ls),
                                  what="the decision line of B's blob")
        line = [d for d in lines if d.get("reference") == layer.digest][-1]
        self.assertEqual((line["decision"], line["rule"], line["status"], line["bytes"]),
                         ("allow", reg_b.host, 200, layer.size), line)

    def test_c3_idle_keepalive_connection_uses_the_new_config(self):
        """containerd keeps connections to the mirror open between pulls: the
        next request on a connection that sat idle across a reload must be
        decided by the new allowlist too (otherwise a registry removed by a
        reload would stay allowed on it until the connection closes)."""
        pg, reg_a, reg_b = self.pg, E["reg_a"], E["reg_b"]
        b_path = h.v2_path("ops/bee", "manifests", "v1", reg_b.host)
        write_config(pg, with_allow_list(pg, [reg_a.host]))
        self.assertEqual(hup(pg), "ok")
        held = h.HttpConnection(pg.port)
        seen = []   # (B listed, status on a new connection, status on the held one)
        try:
            self.assertEqual(held.request("GET", b_path, headers=ACCEPT).status, 403)
            for b_allowed in (True, False, True):
                entries = [reg_a.host, reg_b.host] if b_allowed else [reg_a.host]
                write_config(pg, with_allow_list(pg, entries))
                self.assertEqual(hup(pg), "ok")
                seen.append((b_allowed, pg.get(b_path, headers=ACCEPT).status,
                             held.request("GET", b_path, headers=ACCEPT).status))
            self.assertEqual(held.connects, 1, "the held connection was reopened")
        finally:
            held.close()
            write_config(pg, with_allow_list(pg, [reg_a.host]))
            hup(pg)
        want = [(b, 200 if b else 403, 200 if b else 403) for b, _, _ in seen]
        print(f"\n  (B listed, new conn, idle conn) after each reload: {seen}", end=" ")
        self.assertEqual(seen, want, "(B listed, new connection, idle keep-alive connection)")


# --------------------------------------------------------------------------
# 4. decision log reopen (logrotate)
# --------------------------------------------------------------------------

class D_LogReopen(OpsTest):
    @classmethod
    def setUpClass(cls):
        cls.pg = new_pullgate(admin=False)

    def deny(self, marker: str) -> None:
        """A request whose decision line carries ``marker`` as its registry."""
        r = self.pg.get(h.v2_path("ops/x", "manifests", "v1", f"{marker}.example"))
        self.assertEqual(r.status, 403)

    def wait_marker(self, path: str, marker: str) -> None:
        h.wait_for(lambda: any(marker in ln for ln in ops.read_lines(path)), 5,
                   what=f"{marker} in {path}")

    def test_d1_rename_then_sighup_writes_to_a_new_file(self):
        pg, log = self.pg, self.pg.decision_log_path
        m1, m2, m3 = (f"m{secrets.token_hex(4)}" for _ in range(3))
        self.deny(m1)
        self.wait_marker(log, m1)
        rotated = log + ".1"
        os.rename(log, rotated)                  # what logrotate does (no copytruncate)
        self.deny(m2)                            # still goes to the open file
        self.wait_marker(rotated, m2)
        self.assertFalse(os.path.exists(log), "a new log appeared before SIGHUP")
        self.assertEqual(hup(pg), "ok")
        self.deny(m3)
        self.wait_marker(log, m3)
        new, old = ops.read_lines(log), ops.read_lines(rotated)
        self.assertEqual([m3 in ln for ln in new], [True] * len(new), new)
        self.assertFalse(any(m3 in ln for ln in old), "the renamed file got the new line")
        self.assertTrue(all(json.loads(ln)["registry"].startswith(m3) for ln in new))

    def test_d2_sighup_reopens_the_log_even_when_the_config_is_broken(self):
        """logrotate's postrotate SIGHUP must reopen the log even if the config
        file is broken at that moment (the old config stays in force);
        otherwise lines would go to the rotated file, later deleted."""
        pg, log = self.pg, self.pg.decision_log_path
        good = open(pg.config_path).read()
        marker = f"m{secrets.token_hex(4)}"
        rotated = log + ".2"
        os.rename(log, rotated)
        try:
            with open(pg.config_path, "a") as f:
                f.write("unknownTopLevelKey: 1\n")
            self.assertEqual(hup(pg), "failed")
            self.deny(marker)
            h.wait_for(lambda: any(marker in ln for ln in ops.read_lines(log) + ops.read_lines(rotated)),
                       5, what="the marker line")
            self.assertTrue(any(marker in ln for ln in ops.read_lines(log)),
                            "after SIGHUP with a broken config the line went to the rotated file")
        finally:
            ops.write_atomic(pg.config_path, good)
            hup(pg)


# --------------------------------------------------------------------------
# 5. /healthz /readyz /metrics
# --------------------------------------------------------------------------

class E_Metrics(OpsTest):
    SECRET = f"metrics-secret-{secrets.token_hex(12)}"

    @classmethod
    def setUpClass(cls):
        d = h.make_tempdir("pgit-ops-metrics-")
        creds = h.write_docker_config(os.path.join(d, "config.json"), {
            "seeded.example": {"auth": h.basic_auth_value("bot", cls.SECRET)}})
        cls.pg = new_pullgate(extra_config={"credentialsFile": creds})

    def admin(self, path: str) -> h.HttpResponse:
        return h.http_request("GET", f"http://127.0.0.1:{self.pg.admin_port}{path}")

    def test_e1_healthz_readyz(self):
        r = self.admin("/healthz")
        self.assertEqual((r.status, r.body.strip()), (200, b"ok"))
        self.assertEqual(self.admin("/readyz").status, 200)
        self.assertEqual(self.admin("/nope").status, 404)

    def test_e2_counters_bytes_histogram(self):
        pg, reg_a, reg_b, img = self.pg, E["reg_a"], E["reg_b"], E["small"]
        m0 = h.scrape_metrics(pg.admin_port)
        for fam, typ in (("pullgate_requests_total", "counter"),
                         ("pullgate_relayed_bytes_total", "counter"),
                         ("pullgate_upstream_latency_seconds", "histogram"),
                         ("pullgate_token_fetches_total", "counter"),
                         ("pullgate_token_cache_hits_total", "counter"),
                         ("pullgate_downstream_connections", "gauge"),
                         ("pullgate_upstream_connections", "gauge"),
                         ("pullgate_config_reloads_total", "counter"),
                         ("pullgate_info", "gauge")):
            self.assertIn(fam, m0.families, m0.text)
            self.assertEqual(m0.families[fam].type, typ, fam)
            self.assertTrue(m0.families[fam].help, f"{fam} has no HELP")
        version = cli("--version").stdout.split()[-1]
        self.assertEqual(m0.value("pullgate_info", version=version), 1)
        for result in ("success", "failure"):
            self.assertEqual(m0.value("pullgate_config_reloads_total", result=result), 0)
        upstream0 = len(reg_a.requests())

        n_allowed, n_denied = 5, 3
        bad_paths = [h.v2_path("UPPER", "manifests", "v1", reg_a.host),
                     h.v2_path("ops/small", "blobs", "sha256:xyz", reg_a.host),
                     h.v2_path("ops/small", "manifests", "v1", "not a host!"),
                     h.v2_path("ops/small", "manifests", "-bad-tag", reg_a.host)]
        client = h.HttpConnection(pg.port)
        relayed = received = 0
        for _ in range(n_allowed):
            r = client.request("GET", h.v2_path("ops/small", "manifests", "v1", reg_a.host), headers=ACCEPT)
            self.assertEqual((r.status, r.sha256), (200, img.manifest_digest), r.body_head)
            relayed += r.nbytes
            received += r.nbytes
        for i in range(n_denied):
            r = client.request("GET", h.v2_path("ops/bee", "manifests", "v1", reg_b.host))
            self.assertEqual(r.status, 403, r.body_head)
            received += r.nbytes
        for p in bad_paths:
            r = client.request("GET", p)
            # a reference that is neither tag nor digest names no manifest: 404, as registries answer
            want = 404 if "-bad-tag" in p else 400
            self.assertEqual(r.status, want, f"{p}: {r.body_head!r}")
            received += r.nbytes
        client.close()
        total = n_allowed + n_denied + len(bad_paths)
        self.assertEqual(client.connects, 1, "the requests should share one keep-alive connection")

        def delta(m, name, **labels):
            return m.value(name, default=0.0, **labels) - m0.value(name, default=0.0, **labels)

        expected = {("allow", "allowlisted"): n_allowed, ("deny", "not_allowlisted"): n_denied,
                    ("error", "bad_request"): len(bad_paths)}

        def settled():
            m = h.scrape_metrics(pg.admin_port)
            got = sum(v - m0.series.get(k, 0) for k, v in m.series.items()
                      if k[0] == "pullgate_requests_total")
            return m if got >= total else None
        m1 = h.wait_for(settled, 5, what="the request counters")
        h.wait_for(lambda: len(reg_a.requests()) - upstream0 >= n_allowed, 5,
                   what="registry A's access log")
        time.sleep(0.3)      # anything still to be counted would show up now
        m1 = h.scrape_metrics(pg.admin_port)

        for (decision, reason), n in expected.items():
            self.assertEqual(delta(m1, "pullgate_requests_total", decision=decision, reason=reason), n,
                             f"requests_total{{decision={decision},reason={reason}}}\n{m1.text}")
        others = {labels: m1.series[("pullgate_requests_total", labels)]
                  - m0.series.get(("pullgate_requests_total", labels), 0)
                  for name, labels in m1.series if name == "pullgate_requests_total"}
        others = {k: v for k, v in others.items() if v and
                  (dict(k)["decision"], dict(k)["reason"]) not in expected}
        self.assertEqual(others, {}, "other request counters moved")

        # Bytes: every body byte the client received, relayed or an OCI
        # error body pullgate wrote itself (the README's definition, and the
        # decision log's `bytes`).
        bytes_delta = delta(m1, "pullgate_relayed_bytes_total")
        logged = sum(d["bytes"] for d in pg.decisions()[-total:])
        print(f"\n  client received {received} body bytes, {relayed} relayed; "
              f"relayed_bytes_total +{bytes_delta:.0f}", end=" ")
        self.assertGreater(received, relayed, "the denied / bad requests had error bodies")
        self.assertEqual(bytes_delta, received)
        self.assertEqual(logged, received)

        # Latency histogram: one observation per upstream request.
        upstream = len(reg_a.requests()) - upstream0
        self.assertEqual(upstream, n_allowed, "denied / bad requests must not reach upstream")
        self.assertEqual(delta(m1, "pullgate_upstream_latency_seconds_count"), upstream)
        self.assertGreater(delta(m1, "pullgate_upstream_latency_seconds_sum"), 0)
        self.assertLess(delta(m1, "pullgate_upstream_latency_seconds_sum"), 30 * upstream)
        for m in (m0, m1):
            buckets = m.buckets("pullgate_upstream_latency_seconds")
            les = [le for le, _ in buckets]
            self.assertEqual(les[-1], float("inf"))
            self.assertEqual(len(set(les)), len(les))
            counts = [c for _, c in buckets]
            self.assertEqual(counts, sorted(counts), f"buckets not cumulative: {buckets}")
            self.assertEqual(counts[-1], m.value("pullgate_upstream_latency_seconds_count"))
        self.assertEqual(delta(m1, "pullgate_upstream_latency_seconds_bucket", le="+Inf"), upstream)
        # No token service here: no fetches, no cache hits.
        self.assertEqual(delta(m1, "pullgate_token_fetches_total"), 0)
        self.assertEqual(delta(m1, "pullgate_token_cache_hits_total"), 0)
        pooled = m1.value("pullgate_upstream_connections")
        self.assertGreaterEqual(pooled, 1, "the upstream connection should be pooled")
        self.assertLessEqual(pooled, n_allowed)
        # The stored secret appears nowhere operators look.
        for where, text in (("/metrics", m1.text), ("stderr", pg.stderr_all()),
                            ("decision log", open(pg.decision_log_path).read())):
            self.assertNotIn(self.SECRET, text, f"secret in {where}")

    def test_e3_downstream_connection_gauge(self):
        pg = self.pg
        gauge = lambda: h.scrape_metrics(pg.admin_port).value("pullgate_downstream_connections")  # noqa: E731
        h.wait_for(lambda: gauge() == 0, 5, what="no open client connections")
        client = h.HttpConnection(pg.port)
        r = client.request("GET", "/v2/")
        self.assertEqual(r.status, 200)
        self.assertEqual(gauge(), 1, "an idle keep-alive connection is open")
        second = h.HttpConnection(pg.port)
        self.assertEqual(second.request("GET", "/v2/").status, 200)
        self.assertEqual(gauge(), 2)
        second.close()
        h.wait_for(lambda: gauge() == 1, 5, what="the gauge to drop to 1")
        client.close()
        h.wait_for(lambda: gauge() == 0, 5, what="the gauge to drop to 0")

    def test_e4_tls_sessions_resumed_on_new_upstream_connections(self):
        """A new upstream connection to an origin pullgate has talked to
        resumes the TLS session (new connections open whenever the pool has
        none idle, e.g. for parallel layer downloads)."""
        pg, reg_a = new_pullgate(), E["reg_a"]
        path = h.v2_path("ops/small", "manifests", "v1", reg_a.host)
        handshakes = lambda resumed: h.scrape_metrics(pg.admin_port).value(  # noqa: E731
            "pullgate_upstream_tls_handshakes_total", resumed=resumed)
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        self.assertEqual(pg.get(path, headers=accept).status, 200)
        self.assertEqual((handshakes("false"), handshakes("true")), (1, 0), "one connection, one full handshake")
        # Concurrent requests need more connections than the one pooled.
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: pg.get(path, headers=accept).status, range(6)))
        self.assertEqual(statuses, [200] * 6)
        full, resumed = handshakes("false"), handshakes("true")
        print(f"\n  after 6 concurrent requests: {full:.0f} full, {resumed:.0f} resumed TLS handshakes", end=" ")
        # Every new connection resumes, also several opened at the same
        # instant while others are closed (a connection freed without
        # close_notify must not spoil the cached session for the rest).
        self.assertGreater(resumed, 0, "new connections must resume, not start over")
        self.assertEqual(full, 1, "a new connection started over instead of resuming")

# --------------------------------------------------------------------------
# 6. SIGTERM drains
# --------------------------------------------------------------------------

class F_GracefulStop(OpsTest):
    def test_f_sigterm_lets_a_slow_download_finish(self):
        grace = 20
        pg = new_pullgate(extra_config={"limits": {"shutdownGraceSeconds": grace}})
        layer = E["big"].layers[0]
        path = h.v2_path("ops/big", "blobs", layer.digest, E["reg_a"].host)
        idle = h.HttpConnection(pg.port)
        self.assertEqual(idle.request("GET", "/v2/").status, 200)
        rate = 4 * MiB
        dl = ops.ThrottledDownload(pg.port, path, rate=rate).start()
        self.assertTrue(dl.started.wait(10), "no response header")
        self.assertEqual(dl.status, 200, dl.error)
        time.sleep(0.5)
        self.assertIsNone(dl.finished_at)
        self.assertFalse([d for d in pg.decisions() if d.get("reference") == layer.digest],
                         "the blob's decision line exists: the download is not in flight")
        received_at_term = dl.received
        t_term = time.monotonic()
        pg.proc.send_signal(signal.SIGTERM)

        # Not ready any more (or the admin listener is gone), while draining.
        def not_ready():
            try:
                r = h.http_request("GET", f"http://127.0.0.1:{pg.admin_port}/readyz", timeout=2)
                return r.status == 503 and "503"
            except OSError:
                return "admin closed"
        readyz = h.wait_for(not_ready, 2, interval=0.02, what="/readyz to turn 503")
        # New connections are refused while the download still runs.
        h.wait_for(lambda: ops.connect_refused(pg.port), 2, interval=0.02,
                   what="new connections to be refused")
        self.assertIsNone(dl.finished_at, "download ended before the checks during drain")
        self.assertTrue(pg.alive(), "pullgate exited with a download in flight")
        # The idle keep-alive connection is closed by the server, not kept to the end.
        idle.conn.sock.settimeout(3)
        try:
            got = idle.conn.sock.recv(1)
        except ConnectionResetError:
            got = b""
        except TimeoutError:
            self.fail("an idle keep-alive connection stayed open after SIGTERM")
        self.assertEqual(got, b"", "unexpected bytes on the idle connection")
        idle.close()

        self.assertTrue(dl.join(grace), "download did not finish")
        self.assertIsNone(dl.error, dl.error)
        self.assertEqual((dl.received, dl.sha256), (layer.size, layer.digest))
        code = pg.proc.wait(grace)
        t_exit = time.monotonic()
        print(f"\n  SIGTERM at {received_at_term / MiB:.1f} MiB; readyz: {readyz}; download "
              f"finished {dl.finished_at - t_term:.1f}s later, exit {code} "
              f"{t_exit - dl.finished_at:.2f}s after it", end=" ")
        self.assertEqual(code, 0, pg.stderr_text())
        self.assertLess(t_exit - t_term, grace, "exit took the whole grace period")
        self.assertLess(t_exit - dl.finished_at, 3, "exit lingered after the last request ended")
        self.assertNotIn("grace period over", pg.stderr_all())
        line = [d for d in pg.decisions() if d.get("reference") == layer.digest]
        self.assertEqual(len(line), 1, pg.decisions()[-5:])
        self.assertEqual((line[0]["status"], line[0]["bytes"], line[0]["decision"]),
                         (200, layer.size, "allow"))


# --------------------------------------------------------------------------
# 7. command line
# --------------------------------------------------------------------------

class G_CommandLine(OpsTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = h.make_tempdir("pgit-ops-cli-")
        cls.secrets = {"password": f"pw-{secrets.token_hex(12)}",
                       "auth_password": f"ap-{secrets.token_hex(12)}",
                       "identitytoken": f"it-{secrets.token_hex(12)}",
                       "registrytoken": f"rt-{secrets.token_hex(12)}"}
        s = cls.secrets
        cls.auth_b64 = h.basic_auth_value("robot", s["auth_password"])
        cls.creds = h.write_docker_config(os.path.join(cls.dir, "creds.json"), {
            "registry.example.com": {"auth": cls.auth_b64},
            "ghcr.io/acme": {"username": "acme-bot", "password": s["password"]},
            "https://index.docker.io/v1/": {"identitytoken": s["identitytoken"]},
            "registry.internal:5443": {"registrytoken": s["registrytoken"]}})
        with open(EXAMPLE_CONFIG) as f:
            example = f.read()
        m = re.search(r"^credentialsFile:\s*(\S+)\s*$", example, re.M)
        cls.example_creds_path = m.group(1)
        cls.config = os.path.join(cls.dir, "config.yaml")
        with open(cls.config, "w") as f:
            f.write(example.replace(m.group(0), f"credentialsFile: {cls.creds}"))
        cls.example_entries = re.findall(
            r"^\s+-\s+\"?([^\"\s]+)\"?\s*$",
            example[example.index("privateBaseImageAllowList:"):example.index("credentialsFile:")],
            re.M)

    def assert_no_secrets(self, cp) -> None:
        for text in (cp.stdout, cp.stderr):
            for name, value in list(self.secrets.items()) + [("auth", self.auth_b64)]:
                self.assertNotIn(value, text, f"the {name} leaked")

    def test_g1_check_config_on_the_example(self):
        cp = cli("check-config", "--config", EXAMPLE_CONFIG)
        if os.path.exists(self.example_creds_path):
            print(f"\n  ({self.example_creds_path} exists here: skipping the missing-file case)",
                  end=" ")
        else:
            self.assertEqual(cp.returncode, 1, cp.stdout)
            self.assertIn(self.example_creds_path, cp.stderr)
        cp = cli("check-config", "--config", self.config)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stderr, "")
        self.assertEqual(len(self.example_entries), 3, self.example_entries)
        listed = re.findall(r"^  - (\S+)$", cp.stdout, re.M)
        self.assertEqual(listed, self.example_entries, cp.stdout)
        for key in ("registry.example.com", "ghcr.io/acme", "https://index.docker.io/v1/",
                    "registry.internal:5443"):
            self.assertRegex(cp.stdout, rf"(?m)^  - {re.escape(key)} \(", key)
        self.assertIn(self.creds, cp.stdout)
        self.assert_no_secrets(cp)

    def test_g2_check_config_errors_name_file_line_key(self):
        cases = [
            ("decisionLog.pathh", "listen: 127.0.0.1:5000\ncontainerRegistry:\n"
             "  privateBaseImageAllowList: [registry.example.com]\ndecisionLog:\n"
             "  pathh: /tmp/decisions.log\n", "pathh"),
            ("containerRegistry.privateBaseImageAllowList[1]",
             "containerRegistry:\n  privateBaseImageAllowList:\n    - ok.example\n    - \"https://\"\n",
             "\"https://\""),
            ("listen", "# comment\n\nlisten: localhost:5000\n", "localhost:5000"),
        ]
        for key, text, needle in cases:
            with self.subTest(key=key):
                path = os.path.join(self.dir, f"bad-{len(key)}.yaml")
                with open(path, "w") as f:
                    f.write(text)
                before = text[:text.index(needle)]
                line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
                cp = cli("check-config", "--config", path)
                self.assertEqual(cp.returncode, 1, cp.stdout)
                self.assertRegex(cp.stderr, rf"^{re.escape(path)}:{line}:{col}: {re.escape(key)}: \S",
                                 f"want {path}:{line}:{col}: {key}: ...")
        # a broken credentials file: named, exit 1, and its secret never echoed
        bad_creds = os.path.join(self.dir, "bad-creds.json")
        with open(bad_creds, "w") as f:
            json.dump({"auths": {"bad.example": {"auth": self.secrets["password"]}}}, f)
        cfg = os.path.join(self.dir, "bad-creds.yaml")
        with open(cfg, "w") as f:
            f.write(f"credentialsFile: {bad_creds}\n")
        cp = cli("check-config", "--config", cfg)
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("bad.example", cp.stderr)
        self.assert_no_secrets(cp)

    def test_g3_explain(self):
        def explain(ref):
            cp = cli("explain", "--config", self.config, ref)
            self.assert_no_secrets(cp)
            return cp, explain_fields(cp.stdout)

        cp, f = explain("build.corp.example/team/app:1.0")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(f["image"], "build.corp.example/team/app:1.0")
        self.assertEqual((f["registry"].split()[0], f["repository"]), ("build.corp.example", "team/app"))
        self.assertTrue(f["decision"].startswith("allow"), f)
        self.assertTrue(f["rule"].startswith("*.corp.example"), f)
        self.assertTrue(f["credential"].startswith("anonymous"), f)

        cp, f = explain("ghcr.io/acme/tool@sha256:" + "ab" * 32)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertTrue(f["rule"].startswith("ghcr.io/acme"), f)
        self.assertEqual(f["credential"], "auths:ghcr.io/acme")

        for ref, registry in (("quay.io/foo/bar:1", "quay.io"),
                              ("a.b.corp.example/x:1", "a.b.corp.example"),
                              ("ghcr.io/acmecorp/x:1", "ghcr.io")):
            with self.subTest(ref=ref):
                cp, f = explain(ref)
                self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                self.assertTrue(f["decision"].startswith("deny"), f)
                self.assertNotIn("rule", f)
                self.assertIn(f'"{registry}"', f["to allow"], f)
                self.assertIn("privateBaseImageAllowList", f["to allow"], f)

        cp, f = explain("alpine")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(f["image"], "docker.io/library/alpine:latest")
        self.assertEqual(f["registry"].split()[0], "docker.io")
        self.assertEqual(f["repository"], "library/alpine")
        self.assertEqual(f["credential"], "auths:https://index.docker.io/v1/")

        cp, _ = explain("Not//A:Ref")
        self.assertEqual(cp.returncode, 2, cp.stdout)
        self.assertIn("Not//A:Ref", cp.stderr)

    def test_g4_containerd_hosts(self):
        mirror = "http://127.0.0.1:5999"
        want = [f'server = "{mirror}"', 'capabilities = ["pull", "resolve"]', "[host]"]

        def significant(path):
            with open(path) as f:
                return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]

        d = h.make_tempdir("pgit-ops-certsd-")
        cp = cli("containerd-hosts", "--dir", d, "--mirror", mirror)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stderr, "", "no other directory: no warning")
        self.assertEqual(significant(os.path.join(d, "_default", "hosts.toml")), want)
        self.assertEqual(sorted(os.listdir(d)), ["_default"])

        d2 = h.make_tempdir("pgit-ops-certsd-")
        os.makedirs(os.path.join(d2, "docker.io"))
        cp = cli("containerd-hosts", "--dir", d2, "--mirror", mirror)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(significant(os.path.join(d2, "_default", "hosts.toml")), want)
        warnings = [ln for ln in cp.stderr.splitlines() if "warning" in ln.lower()]
        self.assertEqual(len(warnings), 1, cp.stderr)
        self.assertIn(os.path.join(d2, "docker.io"), warnings[0])

        # Without --mirror: http://<listen> from the config.
        d3 = h.make_tempdir("pgit-ops-certsd-")
        cfg = os.path.join(self.dir, "listen.yaml")
        with open(cfg, "w") as f:
            f.write("listen: 127.0.0.1:5123\n")
        cp = cli("containerd-hosts", "--config", cfg, "--dir", d3)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(significant(os.path.join(d3, "_default", "hosts.toml"))[0],
                         'server = "http://127.0.0.1:5123"')

        cp = cli("containerd-hosts", "--dir", d3, "--mirror", "ftp://127.0.0.1:1")
        self.assertEqual(cp.returncode, 2, cp.stderr)

    def test_g5_version_help_unknown(self):
        cp = cli("--version")
        self.assertEqual(cp.returncode, 0)
        self.assertEqual(cp.stdout.strip(), f"pullgate {project_version()}")
        cp = cli("--help")
        self.assertEqual(cp.returncode, 0)
        for cmd in ("serve", "check-config", "explain", "containerd-hosts", "--version"):
            self.assertIn(cmd, cp.stdout)
        cp = cli("frobnicate")
        self.assertEqual(cp.returncode, 2, cp.stdout)
        self.assertIn("frobnicate", cp.stderr)
        cp = cli()
        self.assertEqual(cp.returncode, 2)
        cp = cli("check-config", "--no-such-option")
        self.assertEqual(cp.returncode, 2)


def main() -> int:
    def add_args(ap):
        ap.add_argument("--unit", default=None,
                        help="the configured pullgate.service (default: next to the binary)")

    def set_unit(args):
        global UNIT_FILE
        UNIT_FILE = os.path.abspath(args.unit or os.path.join(os.path.dirname(PULLGATE_BINARY),
                                                              "pullgate.service"))

    return h.suite_main(sys.modules[__name__], "pullgate-ops", add_args, set_unit)


if __name__ == "__main__":
    sys.exit(main())
