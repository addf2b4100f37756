#!/usr/bin/python3
"""End-to-end pulls through pullgate with a real registry and containerd.

Everything runs in one private network namespace (only ``lo``):
  registry A  TLS, on pullgate's allowlist
  registry B  TLS with the same CA, NOT on the allowlist; containerd trusts
              the CA (SSL_CERT_FILE), so a pull that went around pullgate
              would succeed — the no-bypass test proves none does
  pullgate    allowlist [A, example.org/acme], caFile for A and B
  containerd  certs.d/_default/hosts.toml = the no-bypass form, pointing at pullgate

Run: /usr/bin/python3 integration/test_pull.py --pullgate build/pullgate [-k PATTERN] [--keep]
The last line printed is ``N passed, N failed``; exit status 0 only if all passed.
"""

import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MiB = 1 << 20
LARGE_LAYER = 64 * MiB
RSS_GROWTH_LIMIT_KIB = 16 * 1024
DECISION_FIELDS = ("ts", "id", "client", "method", "registry", "repository", "kind",
                   "reference", "digest", "decision", "reason", "rule", "credential", "status",
                   "upstream_status", "bytes", "duration_ms")

PULLGATE_BINARY = ""   # set by main()
E: dict = {}           # module fixtures, filled by setUpModule


def setUpModule():
    if not os.access(PULLGATE_BINARY, os.X_OK):
        raise FileNotFoundError(f"pullgate binary not found or not executable: {PULLGATE_BINARY}")
    ca = h.TestCA()
    reg_a = h.Registry(ca, name="registry-a", count_connections=True)
    reg_b = h.Registry(ca, name="registry-b", count_connections=True)
    E.update(ca=ca, reg_a=reg_a, reg_b=reg_b, layouts=h.make_tempdir("pgit-layouts-"))
    E["small"] = push_image(reg_a, "pg/small", [b"small layer one\n", {"etc/motd": b"hi\n"}])
    E["secret"] = push_image(reg_b, "pg/secret", [b"must never leave registry B\n"])
    E["pg"] = h.Pullgate(
        PULLGATE_BINARY,
        allow_list=[reg_a.host, "example.org/acme"],
        registries={reg_a.host: {"caFile": ca.ca_cert}, reg_b.host: {"caFile": ca.ca_cert}})
    hosts = h.make_tempdir("pgit-hosts-")
    h.write_no_bypass_hosts(hosts, E["pg"].url)
    E["ctrd"] = h.Containerd(hosts_dir=hosts, trust_ca_file=ca.ca_cert)
    print(f"registry A {reg_a.host}, registry B {reg_b.host}, pullgate {E['pg'].listen}, "
          f"containerd snapshotter {E['ctrd'].snapshotter}")


def push_image(reg: h.Registry, repo: str, layers: list, tag: str = "v1") -> h.ImageInfo:
    """Build an OCI layout with ``layers`` and push it to ``reg`` as repo:tag."""
    info = h.build_oci_layout(os.path.join(E["layouts"], repo.replace("/", "_")), layers, tag)
    h.push_layout(info.layout_dir, reg, repo, tag)
    return info


class PullgateTest(unittest.TestCase):
    """Fails the test that made pullgate exit."""

    def tearDown(self):
        if not E["pg"].alive():
            self.fail(f"pullgate exited (code {E['pg'].proc.returncode}){E['pg'].diagnostics()}")

    def pull(self, ref: str):
        """ctr pull through pullgate; returns (CompletedProcess, seconds)."""
        t0 = time.monotonic()
        cp = E["ctrd"].pull(ref)
        return cp, time.monotonic() - t0

    def lines_for(self, since: int, registry: str, repository: str) -> list[dict]:
        """Decision-log lines after index ``since`` for registry/repository."""
        return [d for d in E["pg"].decisions()[since:]
                if d.get("registry") == registry and d.get("repository") == repository]


class A_AllowedPull(PullgateTest):
    def test_a1_allowed_image_pulls_through_pullgate(self):
        reg, pg, ctrd, img = E["reg_a"], E["pg"], E["ctrd"], E["small"]
        ref = f"{reg.host}/pg/small:v1"
        since, upstream_before = len(pg.decisions()), reg.request_count("pg/small")
        cp, took = self.pull(ref)
        print(f"\n  small pull through pullgate: {took:.2f}s", end=" ")
        self.assertEqual(cp.returncode, 0, h.command_output(cp) + E["pg"].diagnostics())
        self.assertEqual(ctrd.image_digest(ref), img.manifest_digest)
        self.assertLessEqual(set(img.blob_digests), ctrd.content_digests())

        def blobs_logged(_lines):
            got = {d.get("reference") for d in self.lines_for(since, reg.host, "pg/small")
                   if d.get("kind") == "blob" and d.get("decision") == "allow"}
            return set(img.blob_digests) <= got
        pg.wait_decisions(blobs_logged, what="allow lines for every blob of pg/small")
        mine = self.lines_for(since, reg.host, "pg/small")
        self.assertIn("manifest", {d.get("kind") for d in mine if d.get("decision") == "allow"},
                      E["pg"].diagnostics())
        for d in mine:
            self.assertEqual((d.get("decision"), d.get("reason"), d.get("rule")),
                             ("allow", "allowlisted", reg.host), d)
            self.assertEqual(d.get("status"), 200, d)
        # pullgate really went to registry A for it.
        self.assertGreater(reg.request_count("pg/small"), upstream_before)

    def test_a2_decision_log_lines_have_every_field(self):
        lines = E["pg"].decisions()
        self.assertTrue(lines, "decision log is empty")
        ts = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        for d in lines:
            missing = [f for f in DECISION_FIELDS if f not in d]
            self.assertEqual(missing, [], f"fields missing in {d}")
            self.assertRegex(d["ts"], ts)
            self.assertIn(d["decision"], ("allow", "deny", "error"), d)
            for f in ("status", "bytes"):
                self.assertIsInstance(d[f], int, f"{f} in {d}")
            self.assertIsInstance(d["duration_ms"], (int, float), d)


class B_DeniedPull(PullgateTest):
    def test_b_not_allowlisted_registry_is_never_contacted(self):
        reg, pg, ctrd = E["reg_b"], E["pg"], E["ctrd"]
        ref = f"{reg.host}/pg/secret:v1"
        since = len(pg.decisions())
        req_before, conn_before = len(reg.requests()), reg.connection_count()
        cp, took = self.pull(ref)
        print(f"\n  denied pull failed after {took:.2f}s", end=" ")
        self.assertNotEqual(cp.returncode, 0, "pull from a non-allowlisted registry succeeded")
        self.assertIn("403", cp.stderr, h.command_output(cp))
        self.assertIsNone(ctrd.image_digest(ref))
        pg.wait_decisions(lambda _: any(d.get("decision") == "deny"
                                        for d in self.lines_for(since, reg.host, "pg/secret")),
                          what=f"a deny line for {reg.host}/pg/secret")
        mine = self.lines_for(since, reg.host, "pg/secret")
        for d in mine:
            self.assertEqual((d.get("decision"), d.get("reason"), d.get("status")),
                             ("deny", "not_allowlisted", 403), d)
        # Registry B saw nothing: no HTTP request, not even a TCP connection.
        new = reg.requests()[req_before:]
        self.assertEqual([e for e in new if e.repository == "pg/secret"], [],
                         "registry B got requests for pg/secret")
        self.assertEqual(new, [], "registry B got requests")
        self.assertEqual(reg.connection_count(), conn_before, "registry B got TCP connections")


class C_LargePull(PullgateTest):
    def test_c_64mib_layer_streams_with_bounded_memory(self):
        reg, pg, ctrd = E["reg_a"], E["pg"], E["ctrd"]
        baseline = push_image(reg, "pg/baseline", [b"baseline\n"])
        large = push_image(reg, "pg/large", [h.RandomBytes(LARGE_LAYER)])
        layer = large.layers[0]

        cp, _ = self.pull(f"{reg.host}/pg/baseline:v1")
        self.assertEqual(cp.returncode, 0, h.command_output(cp) + E["pg"].diagnostics())
        self.assertEqual(ctrd.image_digest(f"{reg.host}/pg/baseline:v1"), baseline.manifest_digest)
        hwm_small = pg.peak_rss_kib()

        since = len(pg.decisions())
        ref = f"{reg.host}/pg/large:v1"
        cp, took = self.pull(ref)
        hwm_large = pg.peak_rss_kib()
        self.assertEqual(cp.returncode, 0, h.command_output(cp) + E["pg"].diagnostics())
        mib = layer.size / MiB
        print(f"\n  large pull through pullgate: {mib:.1f} MiB in {took:.2f}s "
              f"({mib / took:.0f} MiB/s); pullgate VmHWM after small pull "
              f"{hwm_small / 1024:.1f} MiB, after large pull {hwm_large / 1024:.1f} MiB "
              f"(+{(hwm_large - hwm_small) / 1024:.1f} MiB)", end=" ")
        self.assertEqual(ctrd.image_digest(ref), large.manifest_digest)
        self.assertIn(layer.digest, ctrd.content_digests())
        if not h.SANITIZED:  # in an ASan build RSS is not pullgate's own
            self.assertLess(hwm_large - hwm_small, RSS_GROWTH_LIMIT_KIB,
                            "pullgate's peak RSS grew with the layer size")
        pg.wait_decisions(
            lambda _: any(d.get("reference") == layer.digest
                          for d in self.lines_for(since, reg.host, "pg/large")),
            what="the decision line for the 64 MiB blob")
        blob_lines = [d for d in self.lines_for(since, reg.host, "pg/large")
                      if d.get("reference") == layer.digest and d.get("method") == "GET"]
        self.assertTrue(blob_lines, E["pg"].diagnostics())
        self.assertEqual(blob_lines[-1].get("bytes"), layer.size, blob_lines[-1])
        self.report_direct_pull(ref, large)

    def report_direct_pull(self, ref: str, image: h.ImageInfo) -> None:
        """For comparison only: the same pull straight from registry A."""
        direct = h.Containerd(trust_ca_file=E["ca"].ca_cert)
        h.write_direct_hosts(direct.hosts_dir, E["reg_a"])
        t0 = time.monotonic()
        cp = direct.pull(ref)
        took = time.monotonic() - t0
        ok = cp.returncode == 0 and direct.image_digest(ref) == image.manifest_digest
        print(f"\n  same image pulled directly from registry A: {took:.2f}s"
              f"{'' if ok else ' (FAILED: ' + cp.stderr[-300:] + ')'}", end=" ")
        direct.stop()


class D_DirectHttp(PullgateTest):
    """Requests sent to pullgate directly (harness.http_request), as containerd would send them."""

    def error_code(self, r: h.HttpResponse) -> dict:
        """errors[0] of an OCI error body (asserting its shape)."""
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"),
                        f"Content-Type {r.header('Content-Type')!r}, body {r.body[:300]!r}")
        body = r.json()
        self.assertIsInstance(body.get("errors"), list, body)
        self.assertTrue(body["errors"], body)
        return body["errors"][0]

    def test_d1_ping(self):
        r = E["pg"].get("/v2/")
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(r.header("Docker-Distribution-API-Version"), "registry/2.0")
        self.assertEqual(json.loads(r.body or b"null"), {})

    def test_d2_invalid_name_is_400_and_not_forwarded(self):
        reg = E["reg_a"]
        before = len(reg.requests())
        r = E["pg"].get("/v2/UPPER/manifests/latest", ns=reg.host)
        self.assertEqual(r.status, 400, r.body[:300])
        self.assertEqual(self.error_code(r).get("code"), "NAME_INVALID")
        self.assertEqual(reg.requests()[before:], [], "an invalid name was forwarded")

    def test_d3_not_allowlisted_is_403_denied(self):
        reg = E["reg_b"]
        req_before, conn_before = len(reg.requests()), reg.connection_count()
        r = E["pg"].get("/v2/x/manifests/latest", ns=reg.host)
        self.assertEqual(r.status, 403, r.body[:300])
        err = self.error_code(r)
        self.assertEqual(err.get("code"), "DENIED")
        self.assertIn("privateBaseImageAllowList", err.get("message", ""))
        self.assertIn(reg.host, err.get("message", ""), "the message should name the registry")
        self.assertIsNone(r.header("WWW-Authenticate"))
        self.assertEqual(reg.requests()[req_before:], [])
        self.assertEqual(reg.connection_count(), conn_before)

    def test_d4_delete_is_405_unsupported(self):
        reg = E["reg_a"]
        before = len(reg.requests())
        r = E["pg"].get("/v2/pg/small/manifests/v1", method="DELETE", ns=reg.host)
        self.assertEqual(r.status, 405, r.body[:300])
        self.assertEqual(self.error_code(r).get("code"), "UNSUPPORTED")
        self.assertEqual([e for e in reg.requests()[before:] if e.method == "DELETE"], [])

    def test_d5_head_manifest_matches_registry(self):
        reg, img = E["reg_a"], E["small"]
        accept = {"Accept": h.CONTAINERD_MANIFEST_ACCEPT}
        upstream = reg.head_manifest("pg/small", "v1")
        self.assertEqual(upstream.status, 200)
        r = E["pg"].get("/v2/pg/small/manifests/v1", method="HEAD", ns=reg.host, headers=accept)
        self.assertEqual(r.status, 200, E["pg"].diagnostics())
        self.assertEqual(r.header("Docker-Content-Digest"), upstream.header("Docker-Content-Digest"))
        self.assertEqual(r.header("Docker-Content-Digest"), img.manifest_digest)
        self.assertEqual(r.header("Content-Length"), upstream.header("Content-Length"))
        self.assertEqual(r.header("Content-Length"), str(img.manifest.size))
        self.assertEqual(r.body, b"")


class E_ContainerdHostsCommand(PullgateTest):
    def test_e_generated_hosts_toml_routes_everything_through_pullgate(self):
        """`pullgate containerd-hosts` writes the no-bypass file, and containerd
        using it pulls A through pullgate and never reaches B."""
        reg_a, reg_b, pg, ctrd = E["reg_a"], E["reg_b"], E["pg"], E["ctrd"]
        hosts = h.make_tempdir("pgit-hosts-generated-")
        h.run([PULLGATE_BINARY, "containerd-hosts", "--dir", hosts, "--mirror", pg.url])
        ours = h.write_no_bypass_hosts(h.make_tempdir("pgit-hosts-ref-"), pg.url)

        def significant(path):
            with open(path) as f:
                return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        generated = os.path.join(hosts, "_default", "hosts.toml")
        self.assertEqual(significant(generated), significant(ours))
        self.assertEqual(os.listdir(hosts), ["_default"])

        img = push_image(reg_a, "pg/viahosts", [b"pulled with the generated hosts.toml\n"])
        ref = f"{reg_a.host}/pg/viahosts:v1"
        since = len(pg.decisions())
        cp = ctrd.pull(ref, hosts)
        self.assertEqual(cp.returncode, 0, h.command_output(cp) + E["pg"].diagnostics())
        self.assertEqual(ctrd.image_digest(ref), img.manifest_digest)
        pg.wait_decisions(lambda _: self.lines_for(since, reg_a.host, "pg/viahosts"),
                          what="decision lines for pg/viahosts")

        req_before, conn_before = len(reg_b.requests()), reg_b.connection_count()
        cp = ctrd.pull(f"{reg_b.host}/pg/secret:v1", hosts)
        self.assertNotEqual(cp.returncode, 0)
        self.assertEqual(reg_b.requests()[req_before:], [])
        self.assertEqual(reg_b.connection_count(), conn_before)


def main() -> int:
    return h.suite_main(sys.modules[__name__], "pullgate-test")


if __name__ == "__main__":
    sys.exit(main())
