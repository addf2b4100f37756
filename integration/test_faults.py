#!/usr/bin/python3
"""Fault injection: what a client of pullgate sees when the upstream side
breaks, and that pullgate keeps serving afterwards.

Everything runs in one private network namespace (only ``lo``):
  registry-good   docker-registry, TLS, on the allowlist: a good image that
                  is pulled again (content pruned first) after every fault
  faulty          FaultyRegistry (fault_support.py), TLS with the test CA:
                  one image per fault; per-blob faults
  badcert-ca      FaultyRegistry with a cert from ANOTHER CA
  badcert-ip      FaultyRegistry with a cert of the test CA for 127.0.0.2
  token server    harness TokenServer (HTTPS) + registry-token (docker-registry,
                  auth: token); made slow, then stopped
  faulty-chal     FaultyRegistry whose Bearer challenge names a closed port
  closed port     allowlisted, nothing listens
  pullgate        upstreamStallTimeoutSeconds 2, upstreamConnectTimeoutSeconds 2,
                  caFile = test CA for every registry and the token realm
  containerd      no-bypass certs.d/_default/hosts.toml (README "Pointing containerd at pullgate"), trusts the
                  test CA itself (so a pull around pullgate would succeed)

Each fault is checked twice: with a raw HTTP client against pullgate (the
exact bytes: never a complete response with wrong or missing bytes; the
connection is cut) and with ``ctr images pull`` (an error; every blob in
``ctr content ls`` hashes to its digest). The decision log must name the
reason; a good image must pull right after.

Faults: upstream closes mid-blob (FIN, RST, TLS close_notify, chunked) and
before any response byte; wrong bytes for a blob / a manifest by digest,
a short or long but well-framed upstream body; token service slow, stopped,
realm on a closed port; upstream certificate from another CA / for another
IP; upstream port closed; upstream stalls mid-blob and before the header,
while a slow but steadily progressing upstream (Content-Length and chunked)
must NOT be cut; SIGHUP with broken config files (that pullgate runs in its
own mount namespace with a tmpfs on /var/log, so a fallback to the default
decision-log path cannot touch the host).

Run: /usr/bin/python3 integration/test_faults.py --pullgate build/pullgate [-k PATTERN] [--keep]
The last line printed is ``N passed, N failed``; exit status 0 only if all passed.
"""

import hashlib
import http.client
import json
import os
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import fault_support as fs  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
STALL_TIMEOUT = 2         # limits.upstreamStallTimeoutSeconds
CONNECT_TIMEOUT = 2       # limits.upstreamConnectTimeoutSeconds
LAYER_SIZE = 1 * MiB      # layers of the faulty images (random, incompressible)
FAULT_AT = 300 * KiB      # where close/stall faults hit
PULL_TIMEOUT = 60
RELAY_BUFFER = 64 * KiB   # limits.relayBufferBytes default

PULLGATE_BINARY = ""      # set by main()
E: dict = {}              # module fixtures, filled by setUpModule
TIMINGS: list = []        # (what, seconds) printed at the end


def setUpModule():
    if not os.access(PULLGATE_BINARY, os.X_OK):
        raise FileNotFoundError(f"pullgate binary not found or not executable: {PULLGATE_BINARY}")
    t0 = time.monotonic()
    ca = h.TestCA()
    other_ca = h.TestCA(cn="some-other-ca")
    E.update(ca=ca, other_ca=other_ca, layouts=h.make_tempdir("pgit-fault-layouts-"))

    reg_good = h.Registry(ca, name="registry-good")
    E["reg_good"] = reg_good
    E["img_good"] = h.build_oci_layout(os.path.join(E["layouts"], "good"),
                                       [h.RandomBytes(256 * KiB), {"etc/motd": b"good\n"}], "v1")
    h.push_layout(E["img_good"].layout_dir, reg_good, "pg/good", "v1")

    faulty = fs.FaultyRegistry(ca, name="faulty")
    E["faulty"] = faulty
    E["badcert_ca"] = fs.FaultyRegistry(ca, name="badcert-ca",
                                        cert=(other_ca.server_cert, other_ca.server_key))
    E["badcert_ip"] = fs.FaultyRegistry(ca, name="badcert-ip",
                                        cert=fs.issue_cert_for(ca, "wrong-ip", ips=["127.0.0.2"]))
    for reg in (E["badcert_ca"], E["badcert_ip"]):
        reg.add_image("pg/tls", fault_image("tls-" + reg.name))

    # token auth: a real registry whose token service we make slow, then stop
    signer = h.JwtSigner()
    tok_user, tok_pass = "tokenuser", "tokpw-" + os.urandom(8).hex()
    ts = h.TokenServer(ca, signer, users={tok_user: tok_pass})
    ts.server.handle_error = lambda *a, **k: None  # pullgate hanging up on it is the point
    reg_tok = h.Registry(ca, name="registry-token", token_server=ts,
                         token_user=(tok_user, tok_pass))
    for repo in ("pg/tok-slow", "pg/tok-down", "pg/tok-ok"):
        info = h.build_oci_layout(os.path.join(E["layouts"], repo.replace("/", "_")),
                                  [f"{repo} layer\n".encode()], "v1")
        h.push_layout(info.layout_dir, reg_tok, repo, "v1")
    closed_realm_port = h.free_port()
    chal = fs.FaultyRegistry(ca, name="faulty-chal",
                             challenge=(f"https://127.0.0.1:{closed_realm_port}/token", "chal-svc"))
    chal.add_image("pg/chal", fault_image("chal"))
    E.update(ts=ts, reg_tok=reg_tok, chal=chal, closed_realm_port=closed_realm_port)

    closed = f"127.0.0.1:{h.free_port()}"
    E["closed"] = closed
    ca_entry = {"caFile": ca.ca_cert}
    hosts = [reg_good.host, faulty.host, E["badcert_ca"].host, E["badcert_ip"].host,
             reg_tok.host, chal.host, closed]
    creds = os.path.join(h.make_tempdir("pgit-fault-creds-"), "config.json")
    h.write_docker_config(creds, {reg_tok.host: {"auth": h.basic_auth_value(tok_user, tok_pass)}})
    E["pg"] = h.Pullgate(
        PULLGATE_BINARY, allow_list=[x for x in hosts if x != reg_tok.host],
        registries={**{x: ca_entry for x in hosts}, ts.host: ca_entry},
        extra_config={"credentialsFile": creds,
                      "limits": {"upstreamStallTimeoutSeconds": STALL_TIMEOUT,
                                 "upstreamConnectTimeoutSeconds": CONNECT_TIMEOUT}})
    hosts_dir = h.make_tempdir("pgit-fault-hosts-")
    h.write_no_bypass_hosts(hosts_dir, E["pg"].url)
    E["ctrd"] = h.Containerd(hosts_dir=hosts_dir, trust_ca_file=ca.ca_cert)
    E["pullgates"] = [E["pg"]]
    took = time.monotonic() - t0
    TIMINGS.append(("setup", took))
    print(f"setup {took:.1f}s: registry-good {reg_good.host}, faulty {faulty.host}, "
          f"badcert-ca {E['badcert_ca'].host}, badcert-ip {E['badcert_ip'].host}, "
          f"registry-token {reg_tok.host} (realm {ts.realm}), faulty-chal {chal.host} "
          f"(realm port {closed_realm_port} closed), closed {closed}, pullgate {E['pg'].listen}, "
          f"containerd snapshotter {E['ctrd'].snapshotter}")


def tearDownModule():
    if TIMINGS:
        print("\ntimings: " + ", ".join(f"{w} {s:.1f}s" for w, s in TIMINGS))


_image_count = [0]


def fault_image(name: str, layers=None) -> h.ImageInfo:
    """A fresh image (unique digests) with one LAYER_SIZE random layer."""
    _image_count[0] += 1
    layers = layers or [h.RandomBytes(LAYER_SIZE)]
    return h.build_oci_layout(os.path.join(E["layouts"], f"{name}-{_image_count[0]}"), layers, "v1")


def blob_bytes(info: h.ImageInfo, digest: str) -> bytes:
    with open(os.path.join(info.layout_dir, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
        return f.read()


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


class FaultTest(unittest.TestCase):
    """Shared checks. Fails the test after which a pullgate is no longer running."""

    def tearDown(self):
        for pg in E["pullgates"]:
            if not pg.alive() and not getattr(pg, "exit_reported", False):
                pg.exit_reported = True
                self.fail(f"pullgate exited (code {pg.proc.returncode}){pg.diagnostics()}")

    # -- raw client ----------------------------------------------------------

    def assert_cut(self, res: fs.RawResult, size: int, prefix_of: bytes = b"",
                   framing: str = "length") -> None:
        """The client got a 200 with the right framing and FEWER body bytes
        than announced, and the connection ended (EOF or reset, not a
        timeout): never a complete response."""
        self.assertEqual(res.status, 200, res.describe())
        self.assertEqual(res.framing, framing, res.describe())
        if framing == "length":
            self.assertEqual(res.content_length, size, res.describe())
        self.assertFalse(res.complete, "a complete response: " + res.describe())
        self.assertLess(len(res.body), size, res.describe())
        self.assertIn(res.end, ("eof", "reset"), "connection not cut: " + res.describe())
        if prefix_of:
            # what did arrive is the start of the right blob
            self.assertEqual(res.body, prefix_of[:len(res.body)],
                             "the bytes relayed before the cut differ from the blob")

    def assert_http_client_fails(self, target: str) -> None:
        """http.client reading the same resource ends in an exception."""
        client = h.HttpConnection(E["pg"].port, timeout=15)
        status, nbytes, exc = None, 0, None
        try:
            r = client.request("GET", target)
            status, nbytes = r.status, r.nbytes
        except Exception as e:  # the point: which exception the client sees
            exc = e
        finally:
            client.close()
        self.assertIsNotNone(exc, f"http.client read a complete response: status {status}, "
                                  f"{nbytes} bytes")
        self.assertIsInstance(exc, (http.client.IncompleteRead, ConnectionError,
                                    http.client.RemoteDisconnected), repr(exc))

    def assert_error_response(self, res: fs.RawResult, status: int, code: str,
                              message_has=()) -> dict:
        self.assertEqual(res.status, status, res.describe())
        self.assertTrue(res.complete, res.describe())
        self.assertTrue((res.header("Content-Type") or "").startswith("application/json"),
                        res.describe())
        self.assertIsNone(res.header("WWW-Authenticate"), res.describe())
        err = res.json()["errors"][0]
        self.assertEqual(err.get("code"), code, res.describe())
        for needle in message_has:
            self.assertIn(needle.lower(), err.get("message", "").lower(), res.describe())
        return err

    # -- decision log --------------------------------------------------------

    def wait_reason(self, since: int, repo: str, reason: str, reference: str = None,
                    pg=None, timeout: float = 10) -> dict:
        """The decision line (after index ``since``) for repo[/reference]
        with ``reason``; fails with the log if none appears."""
        pg = pg or E["pg"]

        def pick(lines):
            for d in lines[since:]:
                if (d.get("repository") == repo and d.get("reason") == reason and
                        (reference is None or d.get("reference") == reference)):
                    return d
            return None
        pg.wait_decisions(lambda lines: pick(lines) is not None, timeout=timeout,
                          what=f"a decision line reason={reason} for {repo} {reference or ''}")
        d = pick(pg.decisions())
        self.assertEqual(d.get("decision"), "error", d)
        return d

    # -- containerd ----------------------------------------------------------

    def ctr_pull(self, ref: str, hosts_dir=None):
        t0 = time.monotonic()
        cp = E["ctrd"].pull(ref, hosts_dir=hosts_dir, timeout=PULL_TIMEOUT)
        return cp, time.monotonic() - t0

    def assert_store_intact(self) -> dict:
        """Every blob containerd committed hashes to its digest; returns
        {digest: what it hashed to} ("vanished": garbage-collected meanwhile)."""
        seen, bad = fs.content_integrity(E["ctrd"])
        self.assertEqual(bad, [], "containerd holds content that does not match its digest")
        return seen

    def assert_containerd_fails(self, ref: str, what: str, bad_digests=()) -> str:
        """ctr pull of ``ref`` fails, leaves no image, and the store holds no
        blob that fails its hash (nor the faulted digests at all)."""
        cp, took = self.ctr_pull(ref)
        TIMINGS.append((f"ctr pull ({what})", took))
        print(f"\n  ctr pull with {what}: rc={cp.returncode} after {took:.1f}s: "
              f"{last_line(cp.stderr)}", end=" ")
        self.assertNotEqual(cp.returncode, 0, f"ctr pull succeeded despite {what}" +
                            h.command_output(cp) + E["pg"].diagnostics())
        self.assertIsNone(E["ctrd"].image_digest(ref))
        seen = self.assert_store_intact()
        for d in bad_digests:
            self.assertNotIn(d, seen, f"{d} was committed although only wrong/short bytes exist")
        return cp.stderr

    def good_pull(self, pg=None, hosts_dir=None) -> None:
        """The good image pulls through pullgate right away (content pruned
        first, so every blob is fetched again)."""
        pg = pg or E["pg"]
        reg, img, ctrd = E["reg_good"], E["img_good"], E["ctrd"]
        ref = f"{reg.host}/pg/good:v1"
        ctrd.remove_image(ref)
        self.assertFalse(set(img.blob_digests) & ctrd.content_digests(),
                         "good image content still present after prune")
        since = len(pg.decisions())
        cp, took = self.ctr_pull(ref, hosts_dir)
        TIMINGS.append(("good pull", took))
        self.assertEqual(cp.returncode, 0, "good pull failed after a fault" + h.command_output(cp) +
                         pg.diagnostics())
        self.assertEqual(ctrd.image_digest(ref), img.manifest_digest)
        self.assertLess(took, 15, "good pull was slow")

        def blobs_relayed(lines):
            got = {d.get("reference") for d in lines[since:]
                   if d.get("repository") == "pg/good" and d.get("kind") == "blob"
                   and d.get("decision") == "allow" and d.get("status") == 200}
            return set(img.blob_digests) <= got
        pg.wait_decisions(blobs_relayed, what="allow lines for the good image's blobs")
        seen = self.assert_store_intact()
        # the check is not vacuous: the image just pulled was among what it hashed
        wanted = set(img.blob_digests) | {img.manifest_digest}
        self.assertEqual({d for d in wanted if seen.get(d) == d}, wanted, seen)


# --------------------------------------------------------------------------
# A. upstream closes mid-blob -> upstream_reset
# --------------------------------------------------------------------------

class A_UpstreamClosesMidBlob(FaultTest):

    def raw_close(self, style: str, chunked: bool = False) -> None:
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image(f"close-{style}")
        repo = f"pg/close-{style}{'-chunked' if chunked else ''}"
        faulty.add_image(repo, img)
        layer = img.layers[0].digest
        faulty.set_fault(layer, fs.Fault("close", after=FAULT_AT, style=style, chunked=chunked))
        since, up_since = len(pg.decisions()), len(faulty.requests)
        target = h.v2_path(repo, "blobs", layer, faulty.host)
        res = fs.raw_request(pg.port, "GET", target, timeout=15)
        print(f"\n  close ({style}{', chunked' if chunked else ''}) at {FAULT_AT}: client got "
              f"{len(res.body)}/{img.layers[0].size} bytes, end={res.end}", end=" ")
        self.assert_cut(res, img.layers[0].size, blob_bytes(img, layer),
                        framing="chunked" if chunked else "length")
        up = [r for r in faulty.requests_since(up_since) if layer in r.path]
        self.assertTrue(up and up[0].outcome.startswith("fault:close"), up)
        d = self.wait_reason(since, repo, "upstream_reset", layer)
        self.assertEqual(d.get("status"), 200, d)
        self.assertEqual(d.get("bytes"), len(res.body), d)
        self.assert_http_client_fails(target)

    def test_a1_raw_fin(self):
        self.raw_close("fin")

    def test_a2_raw_rst(self):
        self.raw_close("rst")

    def test_a3_raw_tls_close_notify(self):
        self.raw_close("tls")

    def test_a4_raw_chunked_upstream(self):
        self.raw_close("fin", chunked=True)

    def test_a5_raw_close_before_headers(self):
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image("close-headers", [b"closed before headers\n"])
        faulty.add_image("pg/close-headers", img)
        layer = img.layers[0].digest
        faulty.set_fault(layer, fs.Fault("close_headers"))
        since = len(pg.decisions())
        res = fs.raw_request(pg.port, "GET", h.v2_path("pg/close-headers", "blobs", layer,
                                                       faulty.host))
        err = self.assert_error_response(res, 502, "UNAVAILABLE")
        d = pg.wait_decisions(lambda ls: any(x.get("repository") == "pg/close-headers"
                                             for x in ls[since:]))[since:][-1]
        print(f"\n  upstream closed before any response byte: 502 {err.get('message')!r}, "
              f"decision reason {d.get('reason')}", end=" ")
        self.assertEqual((d.get("decision"), d.get("status")), ("error", 502), d)
        self.assertIn(d.get("reason"), ("upstream_unreachable", "upstream_reset"), d)

    def test_a6_containerd(self):
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image("close-ctr")
        faulty.add_image("pg/close-ctr", img)
        layer = img.layers[0].digest
        faulty.set_fault(layer, fs.Fault("close", after=FAULT_AT, style="fin"))
        since = len(pg.decisions())
        self.assert_containerd_fails(f"{faulty.host}/pg/close-ctr:v1", "an upstream reset mid-blob",
                                     [layer])
        self.wait_reason(since, "pg/close-ctr", "upstream_reset", layer)
        self.good_pull()


# --------------------------------------------------------------------------
# B. wrong bytes for a digest -> digest_mismatch
# --------------------------------------------------------------------------

class B_WrongBytes(FaultTest):

    def raw_corrupt(self, name: str, layers=None, offsets=(), chunked=False) -> None:
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image(name, layers)
        repo = f"pg/{name}"
        faulty.add_image(repo, img)
        layer = img.layers[0]
        faulty.set_fault(layer.digest, fs.Fault("corrupt", corrupt_offsets=offsets, chunked=chunked))
        since, err_before = len(pg.decisions()), pg.stderr_all().count("digest mismatch")
        target = h.v2_path(repo, "blobs", layer.digest, faulty.host)
        res = fs.raw_request(pg.port, "GET", target, timeout=15)
        print(f"\n  wrong bytes ({name}, {layer.size} bytes): client got {len(res.body)} bytes, "
              f"end={res.end}", end=" ")
        self.assert_cut(res, layer.size, framing="chunked" if chunked else "length")
        self.assertNotEqual("sha256:" + hashlib.sha256(res.body).hexdigest(), layer.digest)
        d = self.wait_reason(since, repo, "digest_mismatch", layer.digest)
        self.assertEqual(d.get("bytes"), len(res.body), d)
        self.assertGreater(pg.stderr_all().count("digest mismatch"), err_before,
                           "no diagnostic about the mismatch on stderr")
        self.assert_http_client_fails(target)

    def test_b1_raw_middle_byte(self):
        self.raw_corrupt("corrupt-mid")

    def test_b2_raw_last_byte(self):
        self.raw_corrupt("corrupt-last", offsets=(-1,))

    def test_b3_raw_first_byte_small_blob(self):
        # smaller than the relay buffer: not one body byte may leave
        self.raw_corrupt("corrupt-small", layers=[b"tiny layer\n"], offsets=(0,))

    def test_b4_raw_chunked_upstream(self):
        self.raw_corrupt("corrupt-chunked", chunked=True)

    def test_b5_raw_manifest_by_digest(self):
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image("corrupt-manifest", [b"manifest test\n"])
        faulty.add_image("pg/corrupt-manifest", img)
        faulty.set_fault(img.manifest_digest, fs.Fault("corrupt"))
        since = len(pg.decisions())
        target = h.v2_path("pg/corrupt-manifest", "manifests", img.manifest_digest, faulty.host)
        res = fs.raw_request(pg.port, "GET", target,
                             headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT})
        self.assert_cut(res, img.manifest.size)
        self.wait_reason(since, "pg/corrupt-manifest", "digest_mismatch", img.manifest_digest)
        # the same manifest by tag is not addressed by digest: relayed as is
        res = fs.raw_request(pg.port, "GET", h.v2_path("pg/corrupt-manifest", "manifests", "v1",
                                                       faulty.host),
                             headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT})
        self.assertTrue(res.complete, res.describe())

    def test_b6_raw_truncated_but_complete_looking_upstream(self):
        """The upstream announces and sends 100 bytes fewer than the blob: a
        well-framed HTTP response whose content does not match the digest."""
        self.short_or_long("truncate", -100)

    def test_b7_raw_longer_upstream(self):
        self.short_or_long("extend", +100)

    def short_or_long(self, mode: str, delta: int) -> None:
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image(f"{mode}-blob")
        repo = f"pg/{mode}-blob"
        faulty.add_image(repo, img)
        layer = img.layers[0]
        faulty.set_fault(layer.digest, fs.Fault(mode, after=layer.size + delta if delta < 0 else delta))
        since = len(pg.decisions())
        target = h.v2_path(repo, "blobs", layer.digest, faulty.host)
        res = fs.raw_request(pg.port, "GET", target, timeout=15)
        print(f"\n  upstream sends {layer.size + delta} bytes for a {layer.size}-byte blob: client got "
              f"{len(res.body)} of {res.content_length} announced, end={res.end}", end=" ")
        self.assert_cut(res, layer.size + delta)
        self.wait_reason(since, repo, "digest_mismatch", layer.digest)
        self.assert_http_client_fails(target)

    def test_b8_containerd_layer(self):
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image("corrupt-ctr")
        faulty.add_image("pg/corrupt-ctr", img)
        layer = img.layers[0].digest
        faulty.set_fault(layer, fs.Fault("corrupt"))
        ref = f"{faulty.host}/pg/corrupt-ctr:v1"
        since, up_since = len(pg.decisions()), len(faulty.requests)
        self.assert_containerd_fails(ref, "wrong bytes for a layer", [layer])
        self.wait_reason(since, "pg/corrupt-ctr", "digest_mismatch", layer)
        # A second pull resumes the partial download (Range: bytes=N-): not
        # verified by pullgate (not fetched whole), containerd must still
        # refuse to commit it.
        self.assert_containerd_fails(ref, "wrong bytes for a layer (second pull)", [layer])
        ranges = [r.range for r in faulty.requests_since(up_since) if layer in r.path]
        relayed = [(d.get("decision"), d.get("reason"), d.get("status"), d.get("bytes"))
                   for d in pg.decisions()[since:] if d.get("reference") == layer]
        print(f"\n  upstream saw {len(ranges)} GETs of the layer, Range headers {ranges}; "
              f"pullgate's lines for it (decision, reason, status, bytes): {relayed}", end=" ")
        self.good_pull()

    def test_b9_containerd_manifest(self):
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image("corrupt-manifest-ctr", [b"manifest test via containerd\n"])
        faulty.add_image("pg/corrupt-manifest-ctr", img)
        faulty.set_fault(img.manifest_digest, fs.Fault("corrupt"))
        since = len(pg.decisions())
        self.assert_containerd_fails(f"{faulty.host}/pg/corrupt-manifest-ctr:v1",
                                     "wrong bytes for the manifest", [img.manifest_digest])
        self.wait_reason(since, "pg/corrupt-manifest-ctr", "digest_mismatch", img.manifest_digest)
        self.good_pull()


# --------------------------------------------------------------------------
# C. token service down / slow -> token_unavailable
# --------------------------------------------------------------------------

class C_TokenService(FaultTest):

    def token_fault(self, repo: str, max_seconds: float, what: str, host=None) -> None:
        pg = E["pg"]
        host = host or E["reg_tok"].host
        since = len(pg.decisions())
        t0 = time.monotonic()
        res = fs.raw_request(pg.port, "HEAD", h.v2_path(repo, "manifests", "v1", host),
                             headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT}, timeout=30)
        took = time.monotonic() - t0
        print(f"\n  {what}: HEAD answered {res.status} after {took:.1f}s", end=" ")
        self.assertEqual(res.status, 502, res.describe() + E["pg"].diagnostics())
        self.assertLess(took, max_seconds, "pullgate waited too long for the token service")
        res = fs.raw_request(pg.port, "GET", h.v2_path(repo, "manifests", "v1", host),
                             headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT}, timeout=30)
        err = self.assert_error_response(res, 502, "UNAVAILABLE")
        print(f"message {err.get('message')!r}", end=" ")
        self.assertNotIn("tokpw-", json.dumps(err), "a secret in the error body")
        self.wait_reason(since, repo, "token_unavailable")
        self.assert_containerd_fails(f"{host}/{repo}:v1", what)
        self.wait_reason(since, repo, "token_unavailable")
        self.good_pull()

    def test_c1_token_service_slow(self):
        ts = E["ts"]
        # control: the token flow works at all (so the failures below are the fault)
        pg = E["pg"]
        res = fs.raw_request(pg.port, "GET", h.v2_path("pg/tok-ok", "manifests", "v1",
                                                       E["reg_tok"].host),
                             headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT})
        self.assertEqual(res.status, 200, res.describe() + E["pg"].diagnostics())
        ts.delay = STALL_TIMEOUT + 4
        try:
            # bounded: connect + stall timeouts (+ scheduling slack), never the full delay
            self.token_fault("pg/tok-slow", 2 * CONNECT_TIMEOUT + STALL_TIMEOUT + 1.5,
                             "a token service slower than upstreamStallTimeoutSeconds")
        finally:
            ts.delay = 0

    def test_c2_token_service_down(self):
        E["ts"].stop()
        self.token_fault("pg/tok-down", 3, "the token service stopped")

    def test_c3_realm_on_closed_port(self):
        self.token_fault("pg/chal", 3, "a token realm on a closed port", host=E["chal"].host)


# --------------------------------------------------------------------------
# D. upstream TLS certificate invalid -> 502 upstream_unreachable
# --------------------------------------------------------------------------

class D_InvalidCertificate(FaultTest):

    def bad_tls(self, reg: fs.FaultyRegistry, what: str) -> None:
        pg = E["pg"]
        since, hs_before = len(pg.decisions()), reg.handshake_failures
        res = fs.raw_request(pg.port, "GET", h.v2_path("pg/tls", "manifests", "v1", reg.host),
                             headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT})
        err = self.assert_error_response(res, 502, "UNAVAILABLE")
        print(f"\n  {what}: 502 {err.get('message')!r}", end=" ")
        self.assertTrue(any(s in err.get("message", "").lower()
                            for s in ("certificate", "verify", "tls", "ssl", "handshake")),
                        f"the message does not name the TLS error: {err}")
        # (the server side records the aborted handshake a moment later)
        try:
            h.wait_for(lambda: reg.handshake_failures > hs_before, 5, interval=0.02)
        except TimeoutError:
            self.fail("pullgate did not even try the handshake")
        self.assertEqual([r for r in reg.requests], [],
                         "a request was sent over an unverified connection")
        d = self.wait_reason(since, "pg/tls", "upstream_unreachable")
        self.assertEqual(d.get("status"), 502, d)
        self.assertIsNone(d.get("upstream_status"), d)
        self.assert_containerd_fails(f"{reg.host}/pg/tls:v1", what)
        self.assertEqual([r for r in reg.requests], [])
        self.good_pull()

    def test_d1_cert_from_another_ca(self):
        self.bad_tls(E["badcert_ca"], "a certificate from another CA")

    def test_d2_cert_for_another_ip(self):
        self.bad_tls(E["badcert_ip"], "a certificate for 127.0.0.2")


# --------------------------------------------------------------------------
# E. upstream unreachable -> 502 upstream_unreachable
# --------------------------------------------------------------------------

class E_Unreachable(FaultTest):

    def test_e_closed_port(self):
        pg, host = E["pg"], E["closed"]
        self.assertFalse(h.port_open(int(host.split(":")[1])))
        since = len(pg.decisions())
        t0 = time.monotonic()
        res = fs.raw_request(pg.port, "GET", h.v2_path("pg/none", "manifests", "v1", host),
                             headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT})
        took = time.monotonic() - t0
        err = self.assert_error_response(res, 502, "UNAVAILABLE", [host])
        print(f"\n  closed port: 502 after {took:.2f}s {err.get('message')!r}", end=" ")
        self.assertLess(took, CONNECT_TIMEOUT + 1)
        d = self.wait_reason(since, "pg/none", "upstream_unreachable")
        self.assertEqual(d.get("status"), 502, d)
        self.assert_containerd_fails(f"{host}/pg/none:v1", "an unreachable upstream")
        self.good_pull()


# --------------------------------------------------------------------------
# F. upstream stalls mid-blob -> upstream_timeout
# --------------------------------------------------------------------------

class F_StallMidBlob(FaultTest):

    def test_f1_raw(self):
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image("stall-raw")
        faulty.add_image("pg/stall-raw", img)
        layer = img.layers[0]
        faulty.set_fault(layer.digest, fs.Fault("stall", after=FAULT_AT, stall_seconds=30))
        since = len(pg.decisions())
        target = h.v2_path("pg/stall-raw", "blobs", layer.digest, faulty.host)
        res = fs.raw_request(pg.port, "GET", target, timeout=20)
        self.assertIsNotNone(res.t_last_byte, res.describe())
        quiet = res.t_end - res.t_last_byte
        print(f"\n  stall at {FAULT_AT}: client got {len(res.body)}/{layer.size} bytes, "
              f"cut {quiet:.2f}s after the last byte (end={res.end})", end=" ")
        self.assert_cut(res, layer.size, blob_bytes(img, layer.digest))
        # pullgate forwards in units of its relay buffer (limits.relayBufferBytes,
        # 64 KiB): up to that much of what arrived before the stall may stay in it
        self.assertGreaterEqual(len(res.body), FAULT_AT - RELAY_BUFFER, res.describe())
        self.assertGreaterEqual(quiet, STALL_TIMEOUT - 0.5, "cut before the stall timeout")
        self.assertLessEqual(quiet, 2 * STALL_TIMEOUT, "cut much later than the stall timeout")
        d = self.wait_reason(since, "pg/stall-raw", "upstream_timeout", layer.digest)
        self.assertEqual(d.get("bytes"), len(res.body), d)
        t0 = time.monotonic()
        self.assert_http_client_fails(target)
        self.assertLess(time.monotonic() - t0, 2 * STALL_TIMEOUT + 1)

    def trickle(self, chunked: bool) -> None:
        """8 KiB every 0.5 s: the upstream never goes quiet for anywhere near
        upstreamStallTimeoutSeconds (2 s), so the blob must arrive whole."""
        faulty, pg = E["faulty"], E["pg"]
        repo = f"pg/trickle{'-chunked' if chunked else ''}"
        img = fault_image(repo.split("/")[1], [h.RandomBytes(72 * KiB)])
        faulty.add_image(repo, img)
        layer = img.layers[0]
        faulty.set_fault(layer.digest, fs.Fault("trickle", piece=8 * KiB, interval=0.5,
                                                chunked=chunked))
        res = fs.raw_request(pg.port, "GET", h.v2_path(repo, "blobs", layer.digest,
                                                       faulty.host), timeout=30)
        took = res.t_end - res.t_sent
        print(f"\n  trickling upstream (8 KiB / 0.5 s, {layer.size} bytes"
              f"{', chunked' if chunked else ''}): client got "
              f"{len(res.body)} bytes in {took:.1f}s, end={res.end}", end=" ")
        self.assertTrue(res.complete, "a progressing upstream was cut: " + res.describe() +
                        E["pg"].diagnostics())
        self.assertEqual(res.body, blob_bytes(img, layer.digest))

    def test_f2a_slow_but_progressing_upstream_is_not_cut(self):
        self.trickle(chunked=False)

    def test_f2b_slow_but_progressing_chunked_upstream_is_not_cut(self):
        self.trickle(chunked=True)

    def test_f3_raw_stall_before_headers(self):
        """Connection accepted, request read, then silence: a 502 within about
        the stall timeout (nothing was sent yet, so nothing to cut)."""
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image("stall-headers", [b"stalled before headers\n"])
        faulty.add_image("pg/stall-headers", img)
        layer = img.layers[0].digest
        faulty.set_fault(layer, fs.Fault("stall_headers", stall_seconds=30))
        since = len(pg.decisions())
        t0 = time.monotonic()
        res = fs.raw_request(pg.port, "GET", h.v2_path("pg/stall-headers", "blobs", layer,
                                                       faulty.host), timeout=20)
        took = time.monotonic() - t0
        err = self.assert_error_response(res, 502, "UNAVAILABLE")
        d = pg.wait_decisions(lambda ls: any(x.get("repository") == "pg/stall-headers"
                                             for x in ls[since:]))[since:][-1]
        print(f"\n  upstream silent before the response header: 502 after {took:.1f}s "
              f"{err.get('message')!r}, decision reason {d.get('reason')}", end=" ")
        self.assertGreaterEqual(took, STALL_TIMEOUT - 0.5)
        self.assertLessEqual(took, 2 * STALL_TIMEOUT + 1)
        self.assertEqual((d.get("decision"), d.get("status")), ("error", 502), d)
        self.assertIn(d.get("reason"), ("upstream_timeout", "upstream_unreachable"), d)

    def test_f4_containerd(self):
        faulty, pg = E["faulty"], E["pg"]
        img = fault_image("stall-ctr")
        faulty.add_image("pg/stall-ctr", img)
        layer = img.layers[0].digest
        faulty.set_fault(layer, fs.Fault("stall", after=FAULT_AT, stall_seconds=30))
        since, up_since = len(pg.decisions()), len(faulty.requests)
        self.assert_containerd_fails(f"{faulty.host}/pg/stall-ctr:v1", "an upstream stalling mid-blob",
                                     [layer])
        self.wait_reason(since, "pg/stall-ctr", "upstream_timeout", layer)
        ranges = [r.range for r in faulty.requests_since(up_since) if layer in r.path]
        print(f"\n  upstream saw {len(ranges)} GETs of the layer, Range headers {ranges}", end=" ")
        self.good_pull()


# --------------------------------------------------------------------------
# G. SIGHUP with a broken config keeps the old one
# --------------------------------------------------------------------------

class G_BrokenReload(FaultTest):

    @classmethod
    def setUpClass(cls):
        reg = E["reg_good"]
        # sandboxed: if a reload fell back to the default decision log path,
        # it must not write to the host's /var/log
        pg = fs.VarLogSandboxedPullgate(PULLGATE_BINARY, allow_list=[reg.host],
                                        registries={reg.host: {"caFile": E["ca"].ca_cert}})
        pg.hosts_dir = h.make_tempdir("pgit-fault-hosts-reload-")
        h.write_no_bypass_hosts(pg.hosts_dir, pg.url)
        with open(pg.config_path) as f:
            pg.good_config = f.read()
        E["pg_reload"] = pg
        E["pullgates"].append(pg)

    def write_config(self, text: str) -> None:
        pg = E["pg_reload"]
        with open(pg.config_path + ".tmp", "w") as f:
            f.write(text)
        os.replace(pg.config_path + ".tmp", pg.config_path)

    def manifest_status(self) -> int:
        reg, pg = E["reg_good"], E["pg_reload"]
        return fs.raw_request(pg.port, "HEAD", h.v2_path("pg/good", "manifests", "v1", reg.host),
                              headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT}).status

    def test_g1_broken_files_keep_the_old_config(self):
        pg, reg = E["pg_reload"], E["reg_good"]
        denying = pg.good_config.replace(json.dumps(reg.host), json.dumps("example.org"))
        self.assertNotEqual(denying, pg.good_config)
        broken = {
            "yaml syntax error": pg.good_config + "limits: {maxConnections: [\n",
            "unknown key (with the registry dropped from the allowlist)":
                denying + "bogusKey: 1\n",
            "invalid value (with the registry dropped from the allowlist)":
                denying + "limits:\n  maxConnections: -5\n",
        }
        self.assertEqual(self.manifest_status(), 200, pg.diagnostics())
        for what, text in broken.items():
            self.write_config(text)
            failed_before = pg.stderr_all().count("reload failed")
            pg.reload()
            err = pg.stderr_all()
            self.assertGreater(err.count("reload failed"), failed_before,
                               f"{what}: no 'reload failed' on stderr:\n{err[-1500:]}")
            print(f"\n  {what}: {last_line(err)}", end=" ")
            self.assertTrue(pg.alive(), f"pullgate exited on a broken reload ({what})")
            self.assertEqual(self.manifest_status(), 200,
                             f"after a broken reload ({what}) the old allowlist is gone" +
                             pg.diagnostics())
        self.good_pull(pg, pg.hosts_dir)
        d = [x for x in pg.decisions() if x.get("repository") == "pg/good"][-1]
        self.assertEqual((d.get("decision"), d.get("reason")), ("allow", "allowlisted"), d)

        # control: a VALID file without the registry does take effect...
        failed_before = pg.stderr_all().count("reload failed")
        self.write_config(denying)
        pg.reload()
        self.assertIn("reloaded", last_line(pg.stderr_all()))
        self.assertEqual(self.manifest_status(), 403, "a valid reload did not take effect")
        # ...and the original one restores it
        self.write_config(pg.good_config)
        pg.reload()
        self.assertEqual(self.manifest_status(), 200)

    def test_g2_empty_config_file_is_refused_on_reload(self):
        """A config truncated to zero bytes (a failed write, `> config.yaml`)
        and a SIGHUP: an operator expects the old config to stay, not a
        switch to built-in defaults (empty allowlist, listen 127.0.0.1:5000,
        decision log /var/log/pullgate/decisions.log)."""
        pg = E["pg_reload"]
        self.assertEqual(self.manifest_status(), 200, pg.diagnostics())
        self.write_config("")
        failed_before = pg.stderr_all().count("reload failed")
        try:
            pg.reload()
            err = pg.stderr_all()
            status = self.manifest_status()
            print(f"\n  empty file: {last_line(err)}; manifest HEAD now {status}", end=" ")
            self.assertGreater(err.count("reload failed"), failed_before,
                               f"an empty config file was accepted on reload:\n{err[-800:]}")
            self.assertEqual(status, 200, "after reloading an empty file the allowlist is gone")
        finally:
            self.write_config(pg.good_config)
            pg.reload()
        self.assertEqual(self.manifest_status(), 200)


# --------------------------------------------------------------------------
# Z. nothing went around pullgate
# --------------------------------------------------------------------------

class Z_NoBypass(FaultTest):

    def test_z_every_upstream_request_came_from_pullgate(self):
        regs = [E["faulty"], E["badcert_ca"], E["badcert_ip"], E["chal"]]
        total = 0
        for reg in regs:
            for r in reg.requests:
                total += 1
                self.assertTrue(r.user_agent.startswith("pullgate/"),
                                f"{reg.name} got {r.method} {r.path} from {r.user_agent!r}")
        if total == 0:
            self.skipTest("no fault test ran before this one")
        for pg in E["pullgates"]:
            self.assertTrue(pg.alive())


def main() -> int:
    return h.suite_main(sys.modules[__name__], "pullgate-faults")


if __name__ == "__main__":
    sys.exit(main())
