#!/usr/bin/python3
"""Self-test of the integration harness, without pullgate.

Proves each piece on its own inside a private network namespace: the test
CA and TLS registries, the access log and TCP connection counters, OCI
layouts pushed by skopeo with their digests preserved, containerd pulling
straight from a registry, and the two facts the no-bypass test relies on:
(1) with the no-bypass hosts.toml a failing mirror is NOT bypassed, and
(2) with a bad hosts.toml the bypass happens and the counters see it (so the
no-bypass assertions can fail).

Run: /usr/bin/python3 integration/test_harness_selftest.py [-q] [--keep]
"""

import argparse
import hashlib
import json
import os
import resource
import ssl
import subprocess
import sys
import tarfile
import time
import unittest
import urllib.error
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MiB = 1 << 20
E: dict = {}  # module fixtures, filled by setUpModule


def setUpModule():
    ca = h.TestCA()
    E["ca"] = ca
    E["reg_a"] = h.Registry(ca, name="registry-a", count_connections=True)
    E["reg_b"] = h.Registry(ca, name="registry-b", count_connections=True)
    E["reg_auth"] = h.Registry(ca, name="registry-auth", htpasswd=("tester", "s3cret-pw"))
    E["layouts"] = h.make_tempdir("pgit-layouts-")
    # Trusts the test CA only through hosts.toml `ca =` (no SSL_CERT_FILE).
    E["ctrd"] = h.Containerd()
    # Trusts the test CA process-wide (SSL_CERT_FILE): a bypass would succeed.
    E["ctrd_trusting"] = h.Containerd(trust_ca_file=ca.ca_cert)
    # One small image on each registry.
    for reg, repo in ((E["reg_a"], "pg/small"), (E["reg_b"], "pg/secret")):
        info = h.build_oci_layout(os.path.join(E["layouts"], repo.replace("/", "_")),
                                  [f"content of {repo}\n".encode()], "v1")
        h.push_layout(info.layout_dir, reg, repo, "v1")
        E[repo] = info


def hosts_dir() -> str:
    """A fresh, empty containerd hosts dir."""
    return h.make_tempdir("pgit-hosts-", parent=E["layouts"])


class T01Namespace(unittest.TestCase):
    def test_only_loopback_and_children_inside(self):
        links = h.run(["ip", "-o", "link", "show"]).stdout.strip().splitlines()
        self.assertEqual([ln.split(":")[1].strip() for ln in links], ["lo"])
        mine = h.namespace_inode("net")
        self.assertNotEqual(mine, h.namespace_inode_before_netns("net"),
                            "harness is still in its original network namespace")
        for svc in (E["reg_a"], E["ctrd"]):
            self.assertEqual(h.namespace_inode("net", svc.pid), mine, svc.name)
        # Only the netns moved: the mount namespace (cgroup mounts) is unchanged.
        self.assertEqual(h.namespace_inode("mnt"), h.namespace_inode_before_netns("mnt"))
        self.assertTrue(os.listdir("/sys/fs/cgroup"), "cgroup mounts not visible")


class T02Tls(unittest.TestCase):
    def test_server_cert_chains_to_test_ca_only(self):
        ca = E["ca"]
        out = h.run(["openssl", "verify", "-CAfile", ca.ca_cert, ca.server_cert]).stdout
        self.assertIn("OK", out)
        text = h.run(["openssl", "x509", "-in", ca.server_cert, "-noout", "-text"]).stdout
        self.assertIn("IP Address:127.0.0.1", text)
        self.assertIn("DNS:localhost", text)
        r = h.http_request("GET", E["reg_a"].url + "/v2/", ssl_context=ca.ssl_context())
        self.assertEqual(r.status, 200)
        with self.assertRaises(urllib.error.URLError) as cm:
            h.http_request("GET", E["reg_a"].url + "/v2/",
                           ssl_context=ssl.create_default_context())
        self.assertIsInstance(cm.exception.reason, ssl.SSLCertVerificationError)


class T03RegistryCounters(unittest.TestCase):
    def test_access_log_and_connection_counter_see_one_request(self):
        reg = E["reg_a"]
        n_all, n_repo, n_conn = reg.request_count(), reg.request_count("no/such"), \
            reg.connection_count()
        r = h.http_request("GET", reg.url + "/v2/no/such/manifests/latest",
                           ssl_context=E["ca"].ssl_context())
        self.assertEqual(r.status, 404)
        h.wait_for(lambda: reg.request_count() > n_all, 5, what="access log line")
        self.assertEqual(reg.request_count("no/such"), n_repo + 1)
        last = reg.requests()[-1]
        self.assertEqual((last.method, last.repository, last.status),
                         ("GET", "no/such", 404))
        self.assertEqual(reg.connection_count(), n_conn + 1)


class T04Htpasswd(unittest.TestCase):
    def test_auth_required_and_push_with_credentials(self):
        reg = E["reg_auth"]
        ctx = E["ca"].ssl_context()
        self.assertEqual(h.http_request("GET", reg.url + "/v2/", ssl_context=ctx).status, 401)
        ok = h.http_request("GET", reg.url + "/v2/", headers=reg.auth_headers(), ssl_context=ctx)
        self.assertEqual(ok.status, 200)
        info = h.build_oci_layout(os.path.join(E["layouts"], "auth"), [b"auth\n"], "v1")
        self.assertEqual(h.push_layout(info.layout_dir, reg, "pg/private", "v1"),
                         info.manifest_digest)
        puts = [e.status for e in reg.requests() if e.method == "PUT"]
        self.assertTrue(puts and all(s == 201 for s in puts), puts)


class T05Layout(unittest.TestCase):
    def test_layout_is_consistent(self):
        d = os.path.join(E["layouts"], "check")
        files = {"etc/app.conf": b"a=1\n", "usr/bin/tool": b"#!/bin/sh\necho hi\n"}
        info = h.build_oci_layout(d, [b"first", files], "t1")
        blobs = os.path.join(d, "blobs", "sha256")
        for name in os.listdir(blobs):
            with open(os.path.join(blobs, name), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), name)
        with open(os.path.join(blobs, info.manifest_digest[7:])) as f:
            manifest = json.load(f)
        self.assertEqual(manifest["mediaType"], h.OCI_MANIFEST)
        self.assertEqual([l["mediaType"] for l in manifest["layers"]], [h.OCI_LAYER_TAR] * 2)
        with open(os.path.join(blobs, info.config.digest[7:])) as f:
            config = json.load(f)
        self.assertEqual((config["os"], config["architecture"]), ("linux", "amd64"))
        self.assertEqual(config["rootfs"]["diff_ids"], info.layer_digests)
        with tarfile.open(os.path.join(blobs, info.layer_digests[1][7:])) as tar:
            self.assertEqual(tar.extractfile("usr/bin/tool").read(), files["usr/bin/tool"])
        with open(os.path.join(d, "index.json")) as f:
            index = json.load(f)
        tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
                for m in index["manifests"]}
        self.assertEqual(tags, {"t1": info.manifest_digest})

    def test_large_layer_is_streamed(self):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        info = h.build_oci_layout(os.path.join(E["layouts"], "large"),
                                  [h.RandomBytes(64 * MiB)], "v1")
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        self.assertGreater(info.layers[0].size, 64 * MiB)
        self.assertLess(grown_kib, 16 * 1024, "building the layer held it in memory")
        E["large"] = info


class T06DirectPull(unittest.TestCase):
    """containerd pulls straight from registry A, trusting the CA via hosts.toml."""

    def pull_direct(self, info, repo):
        reg, ctrd = E["reg_a"], E["ctrd"]
        hd = hosts_dir()
        h.write_direct_hosts(hd, reg)
        ref = f"{reg.host}/{repo}:v1"
        t0 = time.monotonic()
        cp = ctrd.pull(ref, hd)
        took = time.monotonic() - t0
        self.assertEqual(cp.returncode, 0, h.command_output(cp))
        self.assertEqual(ctrd.image_digest(ref), info.manifest_digest)
        self.assertLessEqual(set(info.blob_digests), ctrd.content_digests())
        return took

    def test_small(self):
        took = self.pull_direct(E["pg/small"], "pg/small")
        print(f"\n  direct pull small: {took:.2f}s", end=" ")

    def test_large_64mib(self):
        info = E.get("large") or h.build_oci_layout(
            os.path.join(E["layouts"], "large"), [h.RandomBytes(64 * MiB)], "v1")
        t0 = time.monotonic()
        h.push_layout(info.layout_dir, E["reg_a"], "pg/large", "v1")
        pushed = time.monotonic() - t0
        took = self.pull_direct(info, "pg/large")
        print(f"\n  64 MiB: push {pushed:.2f}s, direct pull {took:.2f}s "
              f"(snapshotter {E['ctrd'].snapshotter})", end=" ")

    def test_without_ca_fails(self):
        """The CA is trusted only through hosts.toml: without it TLS fails."""
        hd = hosts_dir()
        os.makedirs(os.path.join(hd, E["reg_a"].host))
        with open(os.path.join(hd, E["reg_a"].host, "hosts.toml"), "w") as f:
            f.write(f'server = "{E["reg_a"].url}"\n\n[host]\n')
        cp = E["ctrd"].pull(f"{E['reg_a'].host}/pg/small:v1", hd)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("x509", cp.stderr)


class T07BypassFacts(unittest.TestCase):
    """The containerd behaviour test_pull's no-bypass test relies on."""

    def test_bypass_would_succeed(self):
        """With SSL_CERT_FILE trust, a direct https pull from B works."""
        reg = E["reg_b"]
        hd = hosts_dir()
        os.makedirs(os.path.join(hd, reg.host))
        with open(os.path.join(hd, reg.host, "hosts.toml"), "w") as f:
            f.write(f'server = "{reg.url}"\n\n[host]\n')
        cp = E["ctrd_trusting"].pull(f"{reg.host}/pg/secret:v1", hd)
        self.assertEqual(cp.returncode, 0, h.command_output(cp))
        E["ctrd_trusting"].remove_image(f"{reg.host}/pg/secret:v1")

    def test_no_bypass_hosts_with_denying_mirror(self):
        """The no-bypass hosts.toml + a mirror answering 403: the pull fails and B
        sees no connection at all; the mirror got ns=<host:port>."""
        reg, ctrd = E["reg_b"], E["ctrd_trusting"]
        stub = h.StubMirror()
        hd = hosts_dir()
        h.write_no_bypass_hosts(hd, stub.url)
        n_req, n_conn = reg.request_count(), reg.connection_count()
        cp = ctrd.pull(f"{reg.host}/pg/secret:v1", hd)
        stub.stop()
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("403", cp.stderr)
        self.assertEqual(reg.request_count(), n_req, reg.requests()[n_req:])
        self.assertEqual(reg.connection_count(), n_conn)
        self.assertTrue(stub.requests, "containerd never asked the mirror")
        method, path, headers = stub.requests[0]
        url = urllib.parse.urlsplit(path)
        self.assertEqual((method, url.path), ("HEAD", "/v2/pg/secret/manifests/v1"))
        self.assertIn("ns=127.0.0.1%3A", url.query)
        self.assertEqual(urllib.parse.parse_qs(url.query)["ns"], [reg.host])
        self.assertIn(h.OCI_MANIFEST, headers.get("Accept", ""))

    def test_bypass_is_detected(self):
        """Negative control: a mirror entry plus `server` falls back to B when
        the mirror says 403 — and the counters see it."""
        reg, ctrd = E["reg_b"], E["ctrd_trusting"]
        stub = h.StubMirror()
        hd = hosts_dir()
        os.makedirs(os.path.join(hd, reg.host))
        with open(os.path.join(hd, reg.host, "hosts.toml"), "w") as f:
            f.write(f'server = "{reg.url}"\n\n[host."{stub.url}"]\n'
                    '  capabilities = ["pull", "resolve"]\n')
        n_req, n_conn = reg.request_count("pg/secret"), reg.connection_count()
        cp = ctrd.pull(f"{reg.host}/pg/secret:v1", hd)
        stub.stop()
        self.assertTrue(stub.requests, "containerd never asked the mirror")
        self.assertEqual(cp.returncode, 0, "expected containerd to go around the mirror")
        self.assertGreater(reg.request_count("pg/secret"), n_req)
        self.assertGreater(reg.connection_count(), n_conn)
        ctrd.remove_image(f"{reg.host}/pg/secret:v1")

    def test_plain_http_bypass_only_visible_to_connection_counter(self):
        """Without any hosts.toml ctr talks plain HTTP to 127.0.0.1: the TLS
        registry answers 400 and logs nothing; only the SYN counter sees it."""
        reg, ctrd = E["reg_b"], E["ctrd_trusting"]
        n_req, n_conn = reg.request_count(), reg.connection_count()
        cp = ctrd.pull(f"{reg.host}/pg/secret:v1", hosts_dir())
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("400", cp.stderr)
        self.assertEqual(reg.request_count(), n_req)
        self.assertGreater(reg.connection_count(), n_conn)


class T08Containerd(unittest.TestCase):
    def test_plugins(self):
        plugins = E["ctrd"].plugins()
        self.assertEqual(plugins.get("io.containerd.grpc.v1.cri"), "ok")
        self.assertEqual(plugins.get(f"io.containerd.snapshotter.v1.{E['ctrd'].snapshotter}"),
                         "ok")
        print(f"\n  snapshotter: {E['ctrd'].snapshotter}", end=" ")

    def test_runc_runs_a_container_inside_the_netns(self):
        """runc still finds the cgroup mounts (only the netns was changed)."""
        files = {}
        for path in ("/usr/bin/true", "/lib/x86_64-linux-gnu/libc.so.6",
                     "/lib64/ld-linux-x86-64.so.2"):
            with open(os.path.realpath(path), "rb") as f:
                files[path.lstrip("/")] = (f.read(), 0o755)
        info = h.build_oci_layout(os.path.join(E["layouts"], "true"), [files], "v1")
        reg, ctrd = E["reg_a"], E["ctrd"]
        h.push_layout(info.layout_dir, reg, "pg/true", "v1")
        hd = hosts_dir()
        h.write_direct_hosts(hd, reg)
        ref = f"{reg.host}/pg/true:v1"
        cp = ctrd.pull(ref, hd)
        self.assertEqual(cp.returncode, 0, h.command_output(cp))
        cp = ctrd.ctr("run", "--rm", "--snapshotter", ctrd.snapshotter, ref, "selftest-true",
                      "/usr/bin/true", check=False, timeout=60)
        self.assertEqual(cp.returncode, 0, h.command_output(cp))
        cp = ctrd.ctr("run", "--rm", "--snapshotter", ctrd.snapshotter, ref, "selftest-false",
                      "/no/such/binary", check=False, timeout=60)
        self.assertNotEqual(cp.returncode, 0)


CHILD = r"""
import json, os, sys, time
sys.path.insert(0, %(dir)r)
import harness as h
ns = h.enter_private_netns("pullgate-selftest-child")
ca = h.TestCA()
reg = h.Registry(ca, name="child-registry")
print(json.dumps({"pid": reg.pid, "dirs": [reg.dir, ca.dir], "ns": ns}), flush=True)
if %(hang)r:
    time.sleep(600)
raise AssertionError("simulated test failure")
"""


class T09Cleanup(unittest.TestCase):
    """A harness user that fails (or is killed) leaves nothing running."""

    def child(self, hang: bool):
        src = CHILD % {"dir": os.path.dirname(os.path.abspath(__file__)), "hang": hang}
        return subprocess.Popen(["/usr/bin/python3", "-c", src], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=h.clean_env())

    @staticmethod
    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/status") as f:
                return any(l.startswith("State:") and "Z" in l.split()[1] for l in f)
        except FileNotFoundError:
            return True

    def test_failure_stops_everything(self):
        p = self.child(hang=False)
        out, err = p.communicate(timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("simulated test failure", err)
        info = json.loads(out.splitlines()[0])
        h.wait_for(lambda: self.gone(info["pid"]), 5, what="child registry to exit")
        for d in info["dirs"]:
            self.assertFalse(os.path.exists(d), f"temp dir {d} left behind")
        self.assertNotIn(info["ns"], h.run(["ip", "netns", "list"]).stdout)

    def test_sigkill_still_kills_children(self):
        p = self.child(hang=True)
        info = json.loads(p.stdout.readline())
        self.assertFalse(self.gone(info["pid"]))
        p.kill()
        p.wait(10)
        p.stdout.close()
        p.stderr.close()
        h.wait_for(lambda: self.gone(info["pid"]), 5, what="PDEATHSIG to kill the registry")
        # SIGKILL skips atexit: clean what it leaves (documented limitation).
        h.run(["ip", "netns", "delete", info["ns"]], check=False)
        h.run(["rm", "-rf", *info["dirs"]], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep temp dirs (PULLGATE_IT_KEEP=1)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    if args.keep:
        os.environ["PULLGATE_IT_KEEP"] = "1"
    name = h.enter_private_netns("pullgate-test")
    print(f"network namespace: {name}")
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    return h.run_suite(suite, verbosity=1 if args.quiet else 2)


if __name__ == "__main__":
    sys.exit(main())
