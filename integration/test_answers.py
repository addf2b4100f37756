#!/usr/bin/python3
"""Answers as registries give them, and an audit trail that never fails quietly.

Everything runs in one private network namespace (only ``lo``):
  registry    TLS, on pullgate's allowlist (its access log shows what reached it)
  pullgate    allowlist [registry]; one instance whose decision log lives on a
              tiny tmpfs that the tests fill up

Checks: a manifest reference that is neither tag nor digest is 404
MANIFEST_UNKNOWN (GET and HEAD) and never forwarded; PUT/PATCH/POST/DELETE
with or without a body are 405 UNSUPPORTED and the connection closes after
a request with a body; the upstream User-Agent carries pullgate's version;
manifest lines of the decision log carry the digest the reference resolved
to; a decision log that cannot be written is counted, reported (diagnostics,
/metrics, /readyz) and, with onWriteError: deny, refuses pulls until it can
be written again; limits.maxUpstreamConnectionsPerOrigin caps what the
upstream sees while every request still succeeds.

Run: /usr/bin/python3 integration/test_answers.py --pullgate build/pullgate [-k PATTERN] [--keep]
The last line printed is ``N passed, N failed``; exit status 0 only if all passed.
"""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PULLGATE_BINARY = ""  # set by main()
E: dict = {}
# distribution answers 404 for an OCI manifest that the client does not accept
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def version() -> str:
    out = subprocess.run([PULLGATE_BINARY, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[-1]


def setUpModule():
    ca = h.TestCA()
    reg = h.Registry(ca, name="registry")
    layouts = h.make_tempdir("pgit-layouts-")
    info = h.build_oci_layout(os.path.join(layouts, "app"), [b"answers layer\n"], "v1")
    h.push_layout(info.layout_dir, reg, "pg/app", "v1")
    E.update(ca=ca, reg=reg, img=info)
    E["pg"] = h.Pullgate(PULLGATE_BINARY, allow_list=[reg.host], registries={reg.host: {"caFile": ca.ca_cert}},
                         admin_port=h.free_port())


def raw_exchange(port: int, request: bytes, timeout: float = 5) -> tuple[bytes, bool]:
    """Sends raw bytes; returns everything read and whether the server closed
    the connection (as opposed to keeping it open until our timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        closed = False
        s.settimeout(2)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except socket.timeout:
            pass
        return data, closed


def status_and_body(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, (json.loads(body) if body.strip() else {})


class A_Answers(unittest.TestCase):
    def test_a1_invalid_manifest_reference_is_404_manifest_unknown(self):
        pg, reg = E["pg"], E["reg"]
        before, since = len(reg.requests()), len(pg.decisions())
        for method in ("GET", "HEAD"):
            for ref in (".INVALID_MANIFEST_NAME", "-rc1", "sha256:abc", "a+b"):
                r = pg.get(f"/v2/pg/app/manifests/{ref}", method=method, ns=reg.host)
                self.assertEqual(r.status, 404, (method, ref, r.body[:300]))
                self.assertEqual(r.header("Content-Type"), "application/json")
                if method == "GET":
                    self.assertEqual(r.json()["errors"][0]["code"], "MANIFEST_UNKNOWN", r.body)
        self.assertEqual(reg.requests()[before:], [], "an invalid reference was forwarded")
        lines = pg.wait_decisions(lambda ls: len(ls) >= since + 8, what="eight decision lines")[since:]
        self.assertEqual(len(lines), 8, lines)
        for d in lines:
            self.assertEqual((d["decision"], d["reason"], d["status"]), ("error", "bad_request", 404), d)

    def test_a2_methods_other_than_get_and_head_are_405(self):
        pg, reg = E["pg"], E["reg"]
        before = len(reg.requests())
        target = f"/v2/pg/app/manifests/v1?ns={reg.host}"
        body = b'{"schemaVersion":2}'
        cases = [
            ("PUT", body), ("PATCH", body), ("POST", body),  # push verbs with a body
            ("DELETE", b""), ("PUT", b""), ("OPTIONS", b""),
        ]
        for method, payload in cases:
            req = (f"{method} {target} HTTP/1.1\r\nHost: {pg.listen}\r\n"
                   f"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                   f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
            raw, closed = raw_exchange(pg.port, req)
            status, err = status_and_body(raw)
            self.assertEqual(status, 405, (method, raw[:300]))
            self.assertEqual(err["errors"][0]["code"], "UNSUPPORTED", raw)
            if payload:
                # the body is never read: the connection must not be reused
                self.assertIn(b"Connection: close", raw, raw[:300])
                self.assertTrue(closed, f"{method} with a body left the connection open")
        # chunked upload bodies too
        req = (f"PATCH /v2/pg/app/blobs/uploads/1?ns={reg.host} HTTP/1.1\r\nHost: x\r\n"
               "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").encode()
        raw, closed = raw_exchange(pg.port, req)
        self.assertEqual(status_and_body(raw)[0], 405, raw[:300])
        self.assertTrue(closed)
        self.assertEqual(reg.requests()[before:], [], "a push verb reached the registry")

    def test_a3_upstream_user_agent_is_the_version(self):
        pg, reg = E["pg"], E["reg"]
        before = len(reg.requests())
        r = pg.get("/v2/pg/app/manifests/v1", method="HEAD", ns=reg.host, headers=ACCEPT)
        self.assertEqual(r.status, 200)
        agents = {e.user_agent for e in reg.requests()[before:]}
        self.assertEqual(agents, {f"pullgate/{version()}"})

    def test_a4_manifest_lines_carry_the_resolved_digest(self):
        pg, reg, img = E["pg"], E["reg"], E["img"]
        since = len(pg.decisions())
        accept = ACCEPT
        self.assertEqual(pg.get("/v2/pg/app/manifests/v1", "HEAD", reg.host, accept).status, 200)
        self.assertEqual(pg.get("/v2/pg/app/manifests/v1", "GET", reg.host, accept).status, 200)
        self.assertEqual(pg.get(f"/v2/pg/app/manifests/{img.manifest_digest}", "GET", reg.host, accept).status, 200)
        blob = img.blob_digests[0]
        self.assertEqual(pg.get(f"/v2/pg/app/blobs/{blob}", "GET", reg.host).status, 200)
        lines = pg.wait_decisions(lambda ls: len(ls) >= since + 4, what="four decision lines")[since:]
        manifests = [d for d in lines if d["kind"] == "manifest"]
        self.assertEqual(len(manifests), 3, lines)
        for d in manifests:
            self.assertEqual(d["digest"], img.manifest_digest, d)
        self.assertIsNone([d for d in lines if d["kind"] == "blob"][0]["digest"])


    def test_a5_tls_client_hello_on_the_plain_port_is_logged_as_such(self):
        import ssl
        pg = E["pg"]
        since = len(pg.decisions())
        ctx = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", pg.port), timeout=5) as raw:
            with self.assertRaises(ssl.SSLError):
                ctx.wrap_socket(raw, server_hostname="localhost")
        lines = pg.wait_decisions(lambda ls: len(ls) > since, what="the ClientHello's line")[since:]
        self.assertEqual((lines[0]["method"], lines[0]["status"], lines[0]["reason"]), ("TLS", 400, "bad_request"))


class B_DecisionLogFull(unittest.TestCase):
    """The decision log on a 64 KiB tmpfs that the test fills."""

    @classmethod
    def setUpClass(cls):
        cls.dir = h.make_tempdir("pgit-fullfs-")
        h.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", cls.dir])
        h.register_cleanup(f"umount {cls.dir}", lambda: h.run(["umount", "-l", cls.dir], check=False))
        reg = E["reg"]
        cls.admin = h.free_port()
        cls.pg = h.Pullgate(PULLGATE_BINARY, allow_list=[reg.host], registries={reg.host: {"caFile": E["ca"].ca_cert}},
                            admin_port=cls.admin,
                            extra_config={"decisionLog": {"path": os.path.join(cls.dir, "decisions.log")}})
        cls.pg.decision_log_path = os.path.join(cls.dir, "decisions.log")  # what pg.decisions() reads

    def fill(self):
        """Fills the tmpfs to the last byte; the caller removes the filler."""
        filler = os.path.join(self.dir, "filler")
        self.addCleanup(lambda: os.path.exists(filler) and os.unlink(filler))
        with open(filler, "ab", buffering=0) as f:
            for size in (4096, 1):
                try:
                    while True:
                        f.write(b"\0" * size)
                except OSError:
                    pass
        return filler

    def admin_get(self, path: str) -> h.HttpResponse:
        return h.http_request("GET", f"http://127.0.0.1:{self.admin}{path}")

    def errors_metric(self) -> int:
        for line in self.admin_get("/metrics").body.decode().splitlines():
            if line.startswith("pullgate_decision_log_errors_total "):
                return int(line.split()[1])
        raise AssertionError("pullgate_decision_log_errors_total missing")

    def head(self) -> int:
        return self.pg.get("/v2/pg/app/manifests/v1", "HEAD", E["reg"].host, ACCEPT).status

    def test_b1_full_filesystem_is_counted_reported_and_recovers(self):
        pg = self.pg
        self.assertEqual(self.head(), 200)
        errors_before = self.errors_metric()
        filler = self.fill()
        # The log file's last page still takes a few lines: serve until the
        # first line is lost, then count 51 more.
        for _ in range(40):
            self.assertEqual(self.head(), 200)
            if self.errors_metric() > errors_before:
                break
        # a line is written after its response: let the count settle
        time.sleep(0.5)
        lost_first = self.errors_metric() - errors_before
        self.assertGreaterEqual(lost_first, 1, "no line was lost on a full filesystem")
        logged_before = len(pg.decisions())
        served = [self.head() for _ in range(51)]
        self.assertEqual(served, [200] * 51, "onWriteError: serve must keep serving")
        lost = lost_first + 51
        h.wait_for(lambda: self.errors_metric() - errors_before >= lost, 5, what="the error count")
        self.assertEqual(self.errors_metric() - errors_before, lost)
        readyz = self.admin_get("/readyz")
        self.assertEqual(readyz.status, 200, "readiness itself is unchanged")
        self.assertIn(b"decision log: FAILING", readyz.body)
        self.assertIn(f"{lost} lines lost".encode(), readyz.body)
        stderr = pg.stderr_all()
        self.assertEqual(stderr.count("cannot write a line"), 1, "one report when the failure period starts")
        self.assertIn("No space left on device", stderr)
        self.assertEqual(len(pg.decisions()), logged_before)

        os.unlink(filler)
        self.assertEqual(self.head(), 200)
        h.wait_for(lambda: len(pg.decisions()) > logged_before, 5, what="logging to resume")
        self.assertIn(f"writable again; {lost} lines were lost", pg.stderr_all())
        self.assertIn(f"decision log: ok ({lost} lines lost earlier)".encode(), self.admin_get("/readyz").body)

    def test_b2_deny_refuses_pulls_while_the_log_cannot_be_written(self):
        pg = self.pg
        self.head()  # in serve mode: a line written ends any failure period left from before
        h.wait_for(lambda: b"decision log: ok" in self.admin_get("/readyz").body, 5, what="the log to be writable")
        cfg = dict(pg.config)
        cfg["decisionLog"] = dict(cfg["decisionLog"], onWriteError="deny")
        with open(pg.config_path, "w") as f:
            f.write(h.to_yaml(cfg))
        pg.reload()
        self.assertEqual(self.head(), 200)
        filler = self.fill()
        # The log file's last page still takes a few lines: the first
        # request whose line cannot be written is served, the next refused.
        for _ in range(40):
            status = self.head()
            if status == 503:
                break
            self.assertEqual(status, 200)
        self.assertEqual(status, 503, "pulls were still served while the log could not be written")
        r = pg.get("/v2/pg/app/manifests/v1", "GET", E["reg"].host, ACCEPT)
        self.assertEqual(r.status, 503, r.body[:300])
        self.assertEqual(r.json()["errors"][0]["code"], "UNAVAILABLE")
        self.assertIn("decisionLog.onWriteError", r.json()["errors"][0]["message"])
        self.assertIn(b"pulls refused", self.admin_get("/readyz").body)
        os.unlink(filler)
        self.assertEqual(self.head(), 503, "the refusal's own line probes the log")
        self.assertEqual(self.head(), 200)
        self.assertTrue(any(d["reason"] == "decision_log_unavailable" for d in pg.decisions()))


class C_ConnectionCap(unittest.TestCase):
    def test_c1_upstream_connections_per_origin_are_capped(self):
        reg = E["reg"]
        cap = 3
        pg = h.Pullgate(PULLGATE_BINARY, allow_list=[reg.host], registries={reg.host: {"caFile": E["ca"].ca_cert}},
                        extra_config={"limits": {"maxUpstreamConnectionsPerOrigin": cap}})
        port = reg.host.rsplit(":", 1)[1]
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                # this pullgate's sockets only: the suite's other instances keep idle pooled ones
                out = subprocess.run(["ss", "-Htnp", "state", "established", f"dport = :{port}"],
                                     capture_output=True, text=True).stdout
                peak[0] = max(peak[0], len([ln for ln in out.splitlines() if f"pid={pg.pid}," in ln]))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
                statuses = list(pool.map(
                    lambda _: pg.get(f"/v2/pg/app/blobs/{E['img'].blob_digests[0]}", ns=reg.host).status,
                    range(96)))
        finally:
            done.set()
            sampler.join()
        self.assertEqual(statuses, [200] * 96)
        print(f"\n  peak upstream connections {peak[0]} (cap {cap})", end=" ")
        self.assertGreater(peak[0], 0)
        self.assertLessEqual(peak[0], cap)


def main() -> int:
    return h.suite_main(sys.modules[__name__], "pullgate-answers")


if __name__ == "__main__":
    sys.exit(main())
