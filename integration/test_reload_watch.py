#!/usr/bin/python3
"""pullgate reloads when its files change, without SIGHUP (reload.watchFiles).

One private network namespace (only ``lo``). No registry is needed: whether
pullgate allows a registry shows in its answer for one nobody listens on
(403 DENIED when refused, 502 when allowed and unreachable).

  - config.yaml replaced by an atomic rename (what editors and config
    management do),
  - the credentials file in a Kubernetes-style Secret volume: a timestamped
    directory, the ``..data`` symlink renamed over, ``config.json ->
    ..data/config.json`` (as kubelet's atomic_writer does),
  - a broken file written in place: the configuration in force stays, the
    failure shows in pullgate_config_reloads_total{result="failure"} and in
    the diagnostics,
  - SIGHUP still reloads, and a SIGHUP right after a change is not followed
    by a second reload of the same files,
  - reload.watchFiles: false turns it off.

Run: /usr/bin/python3 integration/test_reload_watch.py --pullgate build/pullgate [-k PATTERN] [--keep]
"""

import json
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PULLGATE_BINARY = ""  # set by main()
TIMEOUT = 5.0         # debounce (about 1 s) plus the reload
CONFIG_REG = "127.0.0.1:1"    # allowed through the config's allowlist
SECRET_REG = "127.0.0.1:2"    # allowed through a credential in the Secret


def status_for(pg: h.Pullgate, registry: str) -> int:
    return pg.get("/v2/pg/app/manifests/v1", method="HEAD", ns=registry, timeout=10).status


def reloads(pg: h.Pullgate) -> tuple[float, float]:
    body = h.http_request("GET", f"http://127.0.0.1:{pg.admin_port}/metrics", timeout=5).body.decode()

    def value(result):
        m = re.search(r'^pullgate_config_reloads_total\{result="%s"\} (\S+)$' % result, body, re.M)
        return float(m.group(1)) if m else -1.0
    return value("success"), value("failure")


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class SecretVolume:
    """A directory laid out as kubelet writes a Secret volume."""

    def __init__(self, root: str, files: dict) -> None:
        self.root = root
        self.generation = 0
        self.update(files, first=True)
        for name in files:
            os.symlink(os.path.join("..data", name), os.path.join(root, name))

    def update(self, files: dict, first: bool = False) -> None:
        self.generation += 1
        stamp = f"..2026_12_01_00_00_{self.generation:02d}.{os.getpid()}"
        d = os.path.join(self.root, stamp)
        os.mkdir(d)
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        old = None if first else os.readlink(os.path.join(self.root, "..data"))
        os.symlink(stamp, os.path.join(self.root, "..data_tmp"))
        os.rename(os.path.join(self.root, "..data_tmp"), os.path.join(self.root, "..data"))
        if old:
            for name in os.listdir(os.path.join(self.root, old)):
                os.unlink(os.path.join(self.root, old, name))
            os.rmdir(os.path.join(self.root, old))


def docker_config(registries: list) -> str:
    return json.dumps({"auths": {r: {"auth": h.basic_auth_value("u", "p")} for r in registries}})


class ReloadWatch(unittest.TestCase):
    def start(self, watch: bool = True, allow: tuple = ()):
        self.secret = SecretVolume(h.make_tempdir("pgit-secret-"), {"config.json": docker_config([])})
        extra = {"credentialsFile": os.path.join(self.secret.root, "config.json"),
                 "node": {"check": False}}
        if not watch:
            extra["reload"] = {"watchFiles": False}
        pg = h.Pullgate(PULLGATE_BINARY, allow_list=list(allow), admin_port=h.free_port(),
                        extra_config=extra)
        self.addCleanup(pg.stop)
        return pg

    def config_text(self, pg: h.Pullgate, allow: list, watch: bool = True) -> str:
        cfg = json.loads(json.dumps(pg.config))
        cfg["containerRegistry"]["privateBaseImageAllowList"] = allow
        if not watch:
            cfg["reload"] = {"watchFiles": False}
        return h.to_yaml(cfg)

    def wait_status(self, pg: h.Pullgate, registry: str, want: int, what: str) -> float:
        t0 = time.monotonic()
        try:
            h.wait_for(lambda: status_for(pg, registry) == want, TIMEOUT, interval=0.1, what=what)
        except TimeoutError:
            self.fail(f"{what}: {registry} answers {status_for(pg, registry)}, not {want}, after "
                      f"{TIMEOUT}s\n{pg.stderr_text(2000)}")
        return time.monotonic() - t0

    def test_a_config_replaced_by_rename(self):
        pg = self.start()
        self.assertEqual(status_for(pg, CONFIG_REG), 403)
        ok0, bad0 = reloads(pg)
        write_atomic(pg.config_path, self.config_text(pg, [CONFIG_REG]))
        took = self.wait_status(pg, CONFIG_REG, 502, "allowlist added by a rename-over")
        self.assertEqual(reloads(pg), (ok0 + 1, bad0))
        self.assertIn("after a file change", pg.stderr_all())
        print(f"\n  rename-over of config.yaml in force after {took:.2f}s", end=" ")

    def test_b_kubernetes_secret_swap(self):
        pg = self.start()
        link = os.path.join(self.secret.root, "config.json")
        self.assertTrue(os.path.islink(link))
        self.assertEqual(status_for(pg, SECRET_REG), 403)
        ok0, _ = reloads(pg)
        self.secret.update({"config.json": docker_config([SECRET_REG])})
        took = self.wait_status(pg, SECRET_REG, 502, "credential added by a ..data swap")
        self.assertEqual(reloads(pg)[0], ok0 + 1)
        # A second swap takes the credential away again.
        self.secret.update({"config.json": docker_config([])})
        self.wait_status(pg, SECRET_REG, 403, "credential removed by a second ..data swap")
        print(f"\n  Secret ..data swap in force after {took:.2f}s", end=" ")

    def test_c_broken_file_written_in_place_keeps_the_config(self):
        pg = self.start(allow=(CONFIG_REG,))
        self.assertEqual(status_for(pg, CONFIG_REG), 502)
        ok0, bad0 = reloads(pg)
        with open(pg.config_path, "a") as f:  # in place, not renamed
            f.write("containerRegistry: {privateBaseImageAllowList: [\n")
        h.wait_for(lambda: reloads(pg)[1] == bad0 + 1, TIMEOUT, interval=0.1,
                   what="a failed reload counted")
        self.assertEqual(reloads(pg)[0], ok0)
        failed = [ln for ln in pg.stderr_all().splitlines() if "reload failed" in ln]
        self.assertTrue(failed and pg.config_path in failed[-1], pg.stderr_text(2000))
        self.assertEqual(status_for(pg, CONFIG_REG), 502, "the old allowlist must stay in force")
        # Fixed in place: in force again.
        with open(pg.config_path, "w") as f:
            f.write(self.config_text(pg, []))
        self.wait_status(pg, CONFIG_REG, 403, "the fixed file")
        self.assertEqual(reloads(pg), (ok0 + 1, bad0 + 1))

    def test_d_sighup_still_reloads_once(self):
        pg = self.start()
        ok0, bad0 = reloads(pg)
        write_atomic(pg.config_path, self.config_text(pg, [CONFIG_REG]))
        pg.proc.send_signal(signal.SIGHUP)
        self.wait_status(pg, CONFIG_REG, 502, "SIGHUP after a change")
        time.sleep(2.5)  # past the watcher's quiet period: it must find nothing new
        self.assertEqual(reloads(pg), (ok0 + 1, bad0), pg.stderr_text(2000))

    def test_e_watch_files_off(self):
        pg = self.start(watch=False)
        ok0, _ = reloads(pg)
        write_atomic(pg.config_path, self.config_text(pg, [CONFIG_REG], watch=False))
        time.sleep(2.5)
        self.assertEqual(status_for(pg, CONFIG_REG), 403, "reloaded although reload.watchFiles is false")
        self.assertEqual(reloads(pg)[0], ok0)
        pg.proc.send_signal(signal.SIGHUP)
        self.wait_status(pg, CONFIG_REG, 502, "SIGHUP with watchFiles off")


def main() -> int:
    return h.suite_main(sys.modules[__name__], "pullgate-reload-watch")


if __name__ == "__main__":
    sys.exit(main())
