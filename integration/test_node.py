#!/usr/bin/python3
"""Does pullgate know when containerd can pull around it?

One private network namespace (only ``lo``), shared by every case:
  registry U  TLS, NOT on pullgate's allowlist; containerd trusts its CA
              (SSL_CERT_FILE), so a pull that goes around pullgate succeeds
              and U sees the connection
  pullgate    empty allowlist, adminListen, node.containerdConfig /
              node.certsDir = containerd's below
  containerd  CRI plugin with config_path = certs.d, whose _default/hosts.toml
              `pullgate containerd-hosts` writes

Each case puts the node in one hole, proves with a real CRI PullImage (what
kubelet calls) that U sees a connection, that `pullgate check-node` exits 1
naming the file and the problem, and that the running daemon's
pullgate_node_gated reads 0 within a few seconds; then repairs the node and
sees 1 again, without restarting pullgate.

Run: /usr/bin/python3 integration/test_node.py --pullgate build/pullgate [-k PATTERN] [--keep]
Needs root and the Debian packages of test_pull.py plus python3-grpcio.
"""

import json
import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PULLGATE_BINARY = ""   # set by main()
E: dict = {}           # module fixtures, filled by setUpModule
VERDICT_TIMEOUT = 5.0  # "within a few seconds": debounce (1 s) plus the check
IMAGE_REPO = "pg/unlisted"


def setUpModule():
    if not os.access(PULLGATE_BINARY, os.X_OK):
        raise FileNotFoundError(f"pullgate binary not found or not executable: {PULLGATE_BINARY}")
    ca = h.TestCA()
    reg = h.Registry(ca, name="registry-unlisted", count_connections=True)
    layouts = h.make_tempdir("pgit-node-layouts-")
    info = h.build_oci_layout(os.path.join(layouts, "unlisted"), [b"must only come through pullgate\n"], "v1")
    h.push_layout(info.layout_dir, reg, IMAGE_REPO, "v1")
    hosts = h.make_tempdir("pgit-node-certsd-")
    ctrd = h.Containerd(hosts_dir=hosts, trust_ca_file=ca.ca_cert, start=False)
    with open(ctrd.config_path) as f:
        good_config = f.read()
    pg = h.Pullgate(PULLGATE_BINARY, allow_list=[], admin_port=h.free_port(),
                    registries={reg.host: {"caFile": ca.ca_cert}},
                    extra_config={"node": {"containerdConfig": ctrd.config_path, "certsDir": hosts}})
    E.update(ca=ca, reg=reg, hosts=hosts, ctrd=ctrd, pg=pg, good_config=good_config,
             image=f"{reg.host}/{IMAGE_REPO}:v1", image_info=info)
    write_hosts_with_pullgate()
    ctrd.start()
    if ctrd.plugins().get("io.containerd.grpc.v1.cri") != "ok":
        raise RuntimeError("containerd's CRI plugin is not running:\n" + ctrd.stderr_text())
    print(f"registry U {reg.host}, pullgate {pg.listen} (admin {pg.admin_port}), "
          f"containerd {ctrd.config_path}, certs.d {hosts}")


def write_hosts_with_pullgate():
    """The repair for every hosts.toml hole: the command the README gives."""
    cp = h.run([PULLGATE_BINARY, "containerd-hosts", "--dir", E["hosts"], "--mirror", E["pg"].url])
    return cp


def default_hosts() -> str:
    return os.path.join(E["hosts"], "_default", "hosts.toml")


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def check_node(*extra: str):
    return h.run([PULLGATE_BINARY, "check-node", "--config", E["pg"].config_path, *extra], check=False)


def gated_metric():
    """pullgate_node_gated from /metrics, or None when absent."""
    r = h.http_request("GET", f"http://127.0.0.1:{E['pg'].admin_port}/metrics", timeout=5)
    m = re.search(r"^pullgate_node_gated (\S+)$", r.body.decode(), re.M)
    return None if m is None else float(m.group(1))


def wait_metric(value: float) -> float:
    """Seconds until pullgate_node_gated reads ``value`` (AssertionError after VERDICT_TIMEOUT)."""
    t0 = time.monotonic()
    try:
        h.wait_for(lambda: gated_metric() == value, VERDICT_TIMEOUT, interval=0.05,
                   what=f"pullgate_node_gated == {value}")
    except TimeoutError:
        raise AssertionError(f"pullgate_node_gated is {gated_metric()}, not {value} after "
                             f"{VERDICT_TIMEOUT}s\n--- pullgate stderr ---\n{E['pg'].stderr_text(3000)}")
    return time.monotonic() - t0


def cri_pull(image: str):
    """CRI PullImage; returns (image ref or None, error or None)."""
    import grpc
    try:
        return h.cri_pull_image(E["ctrd"].address, image, timeout=120), None
    except grpc.RpcError as exc:
        return None, exc


def remove_cri_image() -> None:
    """Forget the image so that the next pull fetches again."""
    h.run(["ctr", "--address", E["ctrd"].address, "-n", "k8s.io", "images", "rm", "--sync", E["image"]],
          check=False)


def restart_containerd() -> None:
    ctrd = E["ctrd"]
    ctrd.stop()
    ctrd.start()


class NodeTest(unittest.TestCase):
    def tearDown(self):
        if not E["pg"].alive():
            self.fail(f"pullgate exited (code {E['pg'].proc.returncode})\n{E['pg'].stderr_text()}")

    def assert_gated(self, what: str) -> None:
        cp = check_node()
        self.assertEqual(cp.returncode, 0, f"{what}: check-node says not gated:\n{cp.stdout}{cp.stderr}")
        self.assertIn("node is gated", cp.stdout)

    def assert_pull_stays_with_pullgate(self, what: str) -> None:
        reg = E["reg"]
        remove_cri_image()
        conns, reqs = reg.connection_count(), len(reg.requests())
        ref, err = cri_pull(E["image"])
        self.assertIsNone(ref, f"{what}: the unlisted image was pulled")
        self.assertEqual((reg.connection_count() - conns, len(reg.requests()) - reqs), (0, 0),
                         f"{what}: the unlisted registry was contacted")

    def hole(self, name: str, make_hole, repair, file: str, problem: str) -> None:
        """Put the node in a hole, see the daemon's verdict drop, prove the
        bypass and the finding; repair it and see the node gated again."""
        reg, pg = E["reg"], E["pg"]
        wait_metric(1.0)  # gated before the case (also right after setUpModule wrote hosts.toml)
        make_hole()
        try:
            self._in_hole(name, repair, file, problem)
        except BaseException:
            repair()  # the next case starts from a gated node
            raise

    def _in_hole(self, name: str, repair, file: str, problem: str) -> None:
        reg, pg = E["reg"], E["pg"]
        # The running daemon sees it, and says so in /readyz (still ready).
        t_zero = wait_metric(0.0)
        r = h.http_request("GET", f"http://127.0.0.1:{pg.admin_port}/readyz")
        self.assertEqual(r.status, 200, r.body)
        self.assertIn(b"node: NOT gated", r.body)
        self.assertIn(file.encode(), r.body)
        err_text = pg.stderr_all()
        lines = [ln for ln in err_text.splitlines() if "node: NOT gated" in ln and file in ln]
        self.assertTrue(lines, f"{name}: no diagnostics line naming {file}:\n{err_text[-2000:]}")
        # The bypass is real: containerd goes to the unlisted registry itself.
        remove_cri_image()
        conns, reqs = reg.connection_count(), len(reg.requests())
        t0 = time.monotonic()
        ref, err = cri_pull(E["image"])
        took = time.monotonic() - t0
        outcome = "succeeded" if ref else f"failed ({err.details() if err is not None else ''})"
        new_conns, new_reqs = reg.connection_count() - conns, len(reg.requests()) - reqs
        self.assertGreater(new_conns, 0, f"{name}: no connection reached the unlisted registry "
                                         f"(pull: {ref or err})")
        # check-node names it.
        cp = check_node()
        self.assertEqual(cp.returncode, 1, f"{name}: check-node\n{cp.stdout}{cp.stderr}")
        self.assertIn("node is NOT gated", cp.stdout)
        blocks = cp.stdout.split("\n\n")
        named = [b for b in blocks if b.startswith(f"error: {file}\n") and problem in b]
        self.assertTrue(named, f"{name}: no finding for {file} with '{problem}':\n{cp.stdout}")
        self.assertIn("  fix: ", named[0])
        finding = " ".join(named[0].split("problem: ", 1)[1].split())
        # Repaired without restarting pullgate.
        repair()
        t_one = wait_metric(1.0)
        self.assert_gated(f"{name}, repaired")
        print(f"\n  {name}: metric 0 after {t_zero:.2f}s; CRI pull {outcome[-200:]} "
              f"in {took:.2f}s with {new_conns} connection(s), {new_reqs} request(s) at the unlisted "
              f"registry; check-node: {finding[:150]}; metric 1 {t_one:.2f}s after the repair", end=" ")


class A_Gated(NodeTest):
    def test_a1_gated_node(self):
        self.assertEqual(wait_metric(1.0) >= 0, True)
        self.assert_gated("fresh node")
        cp = check_node("--json")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        j = json.loads(cp.stdout)
        self.assertEqual((j["gated"], j["certsDir"], j["containerdConfig"], j["mirror"]),
                         (True, E["hosts"], E["ctrd"].config_path, E["pg"].url), j)
        self.assertEqual([f for f in j["findings"] if f["severity"] == "error"], [], j)
        r = h.http_request("GET", f"http://127.0.0.1:{E['pg'].admin_port}/readyz")
        self.assertEqual(r.status, 200)
        self.assertIn(b"node: gated", r.body)
        self.assert_pull_stays_with_pullgate("gated node")

    def test_a2_usage_errors_exit_2(self):
        cp = h.run([PULLGATE_BINARY, "check-node", "--config", "/nonexistent/config.yaml"], check=False)
        self.assertEqual(cp.returncode, 2, cp.stdout + cp.stderr)
        self.assertIn("/nonexistent/config.yaml", cp.stderr)
        cp = h.run([PULLGATE_BINARY, "check-node", "--no-such-flag"], check=False)
        self.assertEqual(cp.returncode, 2)
        cp = h.run([PULLGATE_BINARY, "check-node", "--mirror", "ftp://x", "--certs-dir", E["hosts"]], check=False)
        self.assertEqual(cp.returncode, 2)


class B_Holes(NodeTest):
    def test_b1_broken_toml(self):
        self.hole("broken TOML in _default/hosts.toml",
                  lambda: write(default_hosts(), f'server = "{E["pg"].url}\ncapabilities = ["pull", "resolve"]\n'
                                                 '\n[host]\n'),
                  write_hosts_with_pullgate, default_hosts(), "does not parse as TOML")

    def test_b2_no_host_table(self):
        self.hole("no [host] table",
                  lambda: write(default_hosts(), f'server = "{E["pg"].url}"\ncapabilities = ["pull", "resolve"]\n'),
                  write_hosts_with_pullgate, default_hosts(), "has no [host] table")

    def test_b3_mirror_entry(self):
        self.hole("a [host.\"...\"] mirror entry (the usual mirror form)",
                  lambda: write(default_hosts(), f'[host."{E["pg"].url}"]\n'
                                                 '  capabilities = ["pull", "resolve"]\n'),
                  write_hosts_with_pullgate, default_hosts(), f'has a [host."{E["pg"].url}"] entry')

    def test_b4_no_server(self):
        self.hole("no server",
                  lambda: write(default_hosts(), 'capabilities = ["pull", "resolve"]\n\n[host]\n'),
                  write_hosts_with_pullgate, default_hosts(), "has no server")

    def test_b5_stray_registry_directory(self):
        reg = E["reg"]
        stray = os.path.join(E["hosts"], reg.host)
        self.hole(f"a stray certs.d/{reg.host}/ directory",
                  lambda: h.write_direct_hosts(E["hosts"], reg),
                  lambda: shutil.rmtree(stray), os.path.join(stray, "hosts.toml"),
                  f"shadows _default for {reg.host}")

    def test_b6_config_path_unset_for_cri(self):
        ctrd = E["ctrd"]

        def make():
            text = re.sub(r"(?m)^\s*config_path = .*\n", "", E["good_config"])
            self.assertNotEqual(text, E["good_config"])
            write(ctrd.config_path, text)
            restart_containerd()

        def repair():
            write(ctrd.config_path, E["good_config"])
            restart_containerd()
        self.hole("config_path unset for CRI", make, repair, ctrd.config_path, "config_path is not set")
        self.assert_pull_stays_with_pullgate("config_path restored")


def main() -> int:
    return h.suite_main(sys.modules[__name__], "pullgate-node")


if __name__ == "__main__":
    sys.exit(main())
