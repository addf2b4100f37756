#!/usr/bin/python3
"""Registry credentials end to end: pullgate authenticates upstream for a
containerd that has no credentials of its own.

Everything runs in one private network namespace (only ``lo``):
  registry-htpasswd  docker-registry, TLS + htpasswd (bcrypt)
  token server       HTTPS, Python, in this process: Basic GET and OAuth2
                     refresh-token POST, RS256 JWTs with a libtrust ``kid``
  registry-token     docker-registry, TLS + ``auth: token`` (that server)
  front + blob store HTTPS, Python: a registry that wants Basic and
                     redirects blobs (302 same origin, then 307) to a
                     second origin that serves them and records headers
  registry-open      docker-registry, TLS, no auth, on NO list: the CRI
                     deny case (containerd trusts its CA, so a bypass would work)
  pullgate           several instances, each with a docker config.json
  containerd         one daemon; ctr pulls use --hosts-dir per pullgate
                     instance, CRI pulls use config_path (the htpasswd one);
                     every hosts.toml is the no-bypass file (README "Pointing containerd at pullgate")

Run: /usr/bin/python3 integration/test_auth.py --pullgate build/pullgate [-k PATTERN] [--keep]
Needs root and the Debian packages of test_pull.py plus python3-grpcio.
The last line printed is ``N passed, N failed``; exit status 0 only if all passed.
"""

import hashlib
import http.server
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PULLGATE_BINARY = ""   # set by main()
E: dict = {}           # module fixtures, filled by setUpModule

SERVICE, ISSUER = "test-registry", "test-issuer"


def secret(prefix: str) -> str:
    """A random secret that cannot occur in a log by accident."""
    return f"{prefix}{secrets.token_hex(16)}"


# --------------------------------------------------------------------------
# a registry front that redirects blobs to another origin
# --------------------------------------------------------------------------

def https_server(ca: h.TestCA, answer) -> tuple[http.server.ThreadingHTTPServer, int]:
    """A threaded HTTPS server on 127.0.0.1 with the test CA's server cert;
    ``answer(handler, path, query)`` returns (status, headers, body)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            status, headers, body = answer(self, url.path,
                                           urllib.parse.parse_qs(url.query, keep_blank_values=True))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ca.server_cert, ca.server_key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop():
        server.shutdown()
        server.server_close()
    h.register_cleanup(f"https server :{server.server_address[1]}", stop)
    return server, server.server_address[1]


class BlobStore:
    """The "CDN": serves blobs of an OCI layout at /objects/<hex> when the
    presigned-URL signature matches; records every request's Authorization."""

    def __init__(self, ca: h.TestCA, blobs_dir: str) -> None:
        self.blobs_dir = blobs_dir
        self.signature = secrets.token_hex(8)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        _, self.port = https_server(ca, self._answer)
        self.host = f"127.0.0.1:{self.port}"

    def url_for(self, digest: str) -> str:
        return (f"https://{self.host}/objects/{digest.split(':', 1)[1]}"
                f"?X-Amz-Expires=300&X-Amz-Signature={self.signature}")

    def _answer(self, req, path, query):
        with self._lock:
            self.requests.append({"method": req.command, "path": path, "query": query,
                                  "authorization": req.headers.get("Authorization")})
        m = re.fullmatch(r"/objects/([0-9a-f]{64})", path)
        if not m or query.get("X-Amz-Signature") != [self.signature]:
            return 403, {"Content-Type": "text/plain"}, b"bad signature\n"
        try:
            with open(os.path.join(self.blobs_dir, m.group(1)), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return 404, {"Content-Type": "text/plain"}, b"no such object\n"
        return 200, {"Content-Type": "application/octet-stream"}, data


class RedirectingFront:
    """A registry that wants Basic ``user:password``, serves manifests from an
    OCI layout on disk, and answers a blob GET with 302 to ``/_hop/<digest>``
    (same origin), which answers 307 to the blob store (another origin).
    Blobs of repository ``pg/loop`` redirect forever (``/_loop/1``, ``/_loop/2``...).
    Records (method, path, Authorization) of every request."""

    def __init__(self, ca: h.TestCA, layout_dir: str, user: str, password: str,
                 store: BlobStore) -> None:
        self.layout_dir = layout_dir
        self.blobs_dir = os.path.join(layout_dir, "blobs", "sha256")
        self.expected = "Basic " + h.basic_auth_value(user, password)
        self.store = store
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        _, self.port = https_server(ca, self._answer)
        self.host = f"127.0.0.1:{self.port}"

    def _manifest(self, ref: str):
        with open(os.path.join(self.layout_dir, "index.json")) as f:
            index = json.load(f)
        for m in index["manifests"]:
            if ref in (m["digest"], m.get("annotations", {}).get("org.opencontainers.image.ref.name")):
                with open(os.path.join(self.blobs_dir, m["digest"].split(":", 1)[1]), "rb") as f:
                    return m, f.read()
        return None, b""

    def _answer(self, req, path, query):
        authz = req.headers.get("Authorization")
        with self._lock:
            self.requests.append({"method": req.command, "path": path, "authorization": authz})
        json_type = {"Content-Type": "application/json",
                     "Docker-Distribution-API-Version": "registry/2.0"}
        if path.startswith("/_hop/"):
            return 307, {"Location": self.store.url_for(path[len("/_hop/"):])}, b""
        if path.startswith("/_loop/"):
            return 302, {"Location": f"/_loop/{int(path.split('/')[-1]) + 1}"}, b""
        if authz != self.expected:
            return 401, {**json_type, "WWW-Authenticate": 'Basic realm="front"'}, json.dumps(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
        if path == "/v2/":
            return 200, json_type, b"{}"
        m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", path)
        if m:
            desc, data = self._manifest(m.group(2))
            if desc is None:
                return 404, json_type, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}'
            return 200, {"Content-Type": desc["mediaType"],
                         "Docker-Content-Digest": desc["digest"]}, data
        m = re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})", path)
        if m and m.group(1) == "pg/loop":
            return 302, {"Location": "/_loop/1"}, b""
        if m and os.path.exists(os.path.join(self.blobs_dir, m.group(2).split(":")[1])):
            return 302, {"Location": f"/_hop/{m.group(2)}"}, b""
        return 404, json_type, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}'


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

def push_image(reg: h.Registry, repo: str, layers: list, tag: str = "v1",
               layout: str = "") -> h.ImageInfo:
    """Build an OCI layout with ``layers`` and push it to ``reg`` as repo:tag."""
    d = os.path.join(E["layouts"], layout or f"{reg.name}_{repo.replace('/', '_')}_{tag}")
    info = h.build_oci_layout(d, layers, tag)
    h.push_layout(info.layout_dir, reg, repo, tag)
    return info


def make_pullgate(name: str, auths, registries: dict, allow_list=(), env=None,
                  creds_path: str = "") -> h.Pullgate:
    """A pullgate whose credentialsFile holds ``auths`` (None: no file), with
    its own no-bypass hosts dir (``pg.hosts_dir``)."""
    extra = {}
    if auths is not None:
        creds_path = creds_path or os.path.join(E["creds"], f"{name}.json")
        h.write_docker_config(creds_path, auths)
    if creds_path:
        extra["credentialsFile"] = creds_path
    pg = h.Pullgate(PULLGATE_BINARY, allow_list=allow_list, registries=registries,
                    extra_config=extra, env=env)
    pg.label = name
    pg.stopped_on_purpose = pg.exit_reported = False
    pg.creds_path = creds_path
    pg.hosts_dir = h.make_tempdir(f"pgit-hosts-{name}-")
    h.write_no_bypass_hosts(pg.hosts_dir, pg.url)
    E["pullgates"].append(pg)
    return pg


def setUpModule():
    if not os.access(PULLGATE_BINARY, os.X_OK):
        raise FileNotFoundError(f"pullgate binary not found or not executable: {PULLGATE_BINARY}")
    t0 = time.monotonic()
    ca = h.TestCA()
    ca_entry = {"caFile": ca.ca_cert}
    E.update(ca=ca, layouts=h.make_tempdir("pgit-layouts-"), creds=h.make_tempdir("pgit-creds-"),
             pullgates=[], bodies=[])
    s = E["secrets"] = {
        "ht_user": "puller", "ht_pass": secret("htpw"), "ht_wrong": secret("htwrong"),
        "tok_user": "tokenuser", "tok_pass": secret("tokpw"), "tok_wrong": secret("tokwrong"),
        "identity_token": secret("refresh"), "front_user": "frontuser",
        "front_pass": secret("frontpw")}

    # htpasswd registry
    reg_ht = h.Registry(ca, name="registry-htpasswd", htpasswd=(s["ht_user"], s["ht_pass"]),
                        count_connections=True)
    E["reg_ht"] = reg_ht
    E["img_ht"] = push_image(reg_ht, "pg/auth", [b"behind htpasswd\n", {"etc/motd": b"hi\n"}])
    E["img_cri"] = push_image(reg_ht, "pg/cri", [b"pulled by the CRI plugin\n"])

    # token-auth registry and its token server
    signer = h.JwtSigner()
    ts = h.TokenServer(ca, signer, users={s["tok_user"]: s["tok_pass"]},
                       refresh_tokens={s["identity_token"]: "refresh-user"},
                       service=SERVICE, issuer=ISSUER, expires_in=300)
    reg_tok = h.Registry(ca, name="registry-token", token_server=ts,
                         token_user=(s["tok_user"], s["tok_pass"]))
    E.update(signer=signer, ts=ts, reg_tok=reg_tok)
    E["img_tok1"] = push_image(reg_tok, "pg/tok", [b"token v1\n"], "v1", layout="tok")
    E["img_tok2"] = push_image(reg_tok, "pg/tok", [b"token v2, other layer\n"], "v2", layout="tok")
    E["img_flight"] = push_image(reg_tok, "pg/flight", [b"single flight\n"])
    E["img_idtok"] = push_image(reg_tok, "pg/idtok", [b"pulled with an identity token\n"])
    E["img_regtok"] = push_image(reg_tok, "pg/regtok", [b"pulled with a registry token\n"])
    s["registry_token"] = ts.mint("regtoken-user", ["repository:pg/regtok:pull"], expires_in=3600)

    # redirecting front + blob store (different origins)
    E["img_front"] = h.build_oci_layout(os.path.join(E["layouts"], "front"),
                                        [b"served by the blob store\n", {"bin/x": b"x\n"}], "v1")
    store = BlobStore(ca, os.path.join(E["layouts"], "front", "blobs", "sha256"))
    front = RedirectingFront(ca, os.path.join(E["layouts"], "front"), s["front_user"],
                             s["front_pass"], store)
    E.update(store=store, front=front)

    # a registry no one allowed
    reg_open = h.Registry(ca, name="registry-open", count_connections=True)
    E["reg_open"] = reg_open
    E["img_open"] = push_image(reg_open, "pg/open", [b"must stay unreachable\n"])

    # pullgate instances
    E["pg_ht"] = make_pullgate(
        "ht", {reg_ht.host: {"auth": h.basic_auth_value(s["ht_user"], s["ht_pass"])}},
        {reg_ht.host: ca_entry, reg_open.host: ca_entry})
    E["pg_ht_wrong"] = make_pullgate(
        "ht-wrong", {reg_ht.host: {"username": s["ht_user"], "password": s["ht_wrong"]}},
        {reg_ht.host: ca_entry})
    th = reg_tok.host
    E["pg_tok"] = make_pullgate("tok", {
        th: {"auth": h.basic_auth_value(s["tok_user"], s["tok_pass"])},
        f"{th}/pg/idtok": {"identitytoken": s["identity_token"]},
        f"{th}/pg/regtok": {"registrytoken": s["registry_token"]},
        f"{th}/pg/wrongpw": {"auth": h.basic_auth_value(s["tok_user"], s["tok_wrong"])},
    }, {th: ca_entry, ts.host: ca_entry})
    E["pg_front"] = make_pullgate(
        "front", {front.host: {"username": s["front_user"], "password": s["front_pass"]}},
        {front.host: ca_entry, store.host: ca_entry})

    # containerd: trusts the test CA itself (a bypass would succeed), has no
    # credentials; CRI pulls go through the htpasswd pullgate.
    E["ctrd"] = h.Containerd(hosts_dir=E["pg_ht"].hosts_dir, trust_ca_file=ca.ca_cert)
    print(f"setup {time.monotonic() - t0:.1f}s: registry-htpasswd {reg_ht.host}, "
          f"registry-token {reg_tok.host} (realm {ts.realm}, kid {signer.kid}), "
          f"front {front.host} -> blob store {store.host}, registry-open {reg_open.host}, "
          f"containerd snapshotter {E['ctrd'].snapshotter}")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def lines_for(pg: h.Pullgate, since: int, registry: str, repository: str) -> list[dict]:
    return [d for d in pg.decisions()[since:]
            if d.get("registry") == registry and d.get("repository") == repository]


def token_desc(reqs) -> str:
    return "\n".join(f"  {r.method} {r.path} query={r.query} form_keys={sorted(r.form)} "
                     f"auth={'yes' if r.authorization else 'no'} basic_user={r.basic_user} "
                     f"status={r.status} ua={r.user_agent!r}" for r in reqs) or "  (none)"


class AuthTest(unittest.TestCase):
    """Fails the test after which a pullgate instance is no longer running."""

    def tearDown(self):
        for pg in E["pullgates"]:
            if not pg.alive() and not pg.stopped_on_purpose and not pg.exit_reported:
                pg.exit_reported = True   # blame only the test during which it died
                self.fail(f"pullgate[{pg.label}] exited (code {pg.proc.returncode})"
                          f"{pg.diagnostics()}")

    def wait_decisions(self, pg: h.Pullgate, pred, what: str = "decision-log lines") -> list[dict]:
        """pg.wait_decisions, but a pullgate that died fails at once, with its stderr."""
        def check(lines):
            if not pg.alive():
                pg.exit_reported = True
                self.fail(f"pullgate[{pg.label}] died (exit {pg.proc.returncode}) before "
                          f"logging {what}{pg.diagnostics()}")
            return pred(lines)
        return pg.wait_decisions(check, what=what)

    def assert_alive(self, pg: h.Pullgate, grace: float = 0.3) -> None:
        """pullgate still runs ``grace`` seconds from now."""
        time.sleep(grace)
        if not pg.alive():
            pg.exit_reported = True
            self.fail(f"pullgate[{pg.label}] died (exit {pg.proc.returncode}){pg.diagnostics()}")

    def stop(self, pg: h.Pullgate) -> None:
        """Stop an instance this test no longer needs (its logs stay for Z)."""
        self.assert_alive(pg, grace=0)
        pg.stopped_on_purpose = True
        pg.stop()

    def pull(self, pg: h.Pullgate, ref: str):
        """ctr pull through ``pg`` (its no-bypass hosts dir); (cp, seconds)."""
        t0 = time.monotonic()
        cp = E["ctrd"].pull(ref, hosts_dir=pg.hosts_dir)
        took = time.monotonic() - t0
        print(f"\n  ctr pull {ref} via pullgate[{pg.label}]: rc={cp.returncode} {took:.2f}s", end=" ")
        return cp, took

    def assert_pulled(self, pg: h.Pullgate, ref: str, img: h.ImageInfo) -> None:
        cp, _ = self.pull(pg, ref)
        self.assertEqual(cp.returncode, 0, h.command_output(cp) + pg.diagnostics())
        self.assertEqual(E["ctrd"].image_digest(ref), img.manifest_digest)
        self.assertLessEqual(set(img.blob_digests), E["ctrd"].content_digests())

    def wait_blob_lines(self, pg, since, registry, repo, img) -> list[dict]:
        """Wait until every blob of ``img`` has an allow line; return the lines."""
        def done(_):
            got = {d.get("reference") for d in lines_for(pg, since, registry, repo)
                   if d.get("kind") == "blob" and d.get("decision") == "allow"}
            return set(img.blob_digests) <= got
        self.wait_decisions(pg, done, what=f"allow lines for every blob of {registry}/{repo}")
        return lines_for(pg, since, registry, repo)

    def assert_credential_lines(self, lines: list[dict], key: str, rules=()) -> None:
        """Every line: allowed because of stored credentials, the secret taken
        from ``key``. ``rule`` is ``key`` or one of ``rules`` (other stored
        keys that match too: the policy needs any one of them)."""
        self.assertTrue(lines)
        self.assertIn("manifest", {d.get("kind") for d in lines})
        for d in lines:
            self.assertEqual((d.get("decision"), d.get("reason"), d.get("credential"),
                              d.get("status")), ("allow", "has_credentials", f"auths:{key}", 200), d)
            self.assertIn(d.get("rule"), {key, *rules}, d)

    def get(self, pg: h.Pullgate, path: str, ns: str, headers=None) -> h.HttpResponse:
        r = pg.get(path, ns=ns, headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT, **(headers or {})})
        E["bodies"].append(r.body)
        for k, v in r.headers.items():
            E["bodies"].append(f"{k}: {v}".encode())
        return r

    def assert_denied_by_upstream(self, r: h.HttpResponse, pg: h.Pullgate, since: int,
                                  registry: str, repo: str, key: str) -> None:
        """403 DENIED naming registry, credential key and repository; no
        WWW-Authenticate; the decision line says upstream_auth_failed."""
        self.assertEqual(r.status, 403, r.body[:400])
        self.assertIsNone(r.header("WWW-Authenticate"), "WWW-Authenticate passed to the client")
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"))
        err = r.json()["errors"][0]
        self.assertEqual(err.get("code"), "DENIED", err)
        msg = err.get("message", "")
        for part in (f"upstream {registry}", "rejected the stored credentials", f"({key})", repo):
            self.assertIn(part, msg)
        lines = self.wait_decisions(pg, lambda _: lines_for(pg, since, registry, repo),
                                  what=f"decision line for {registry}/{repo}")
        d = lines_for(pg, since, registry, repo)[-1]
        self.assertEqual((d.get("reason"), d.get("status"), d.get("credential")),
                         ("upstream_auth_failed", 403, f"auths:{key}"), d)
        self.assertIn(d.get("decision"), ("deny", "error"), d)
        del lines


# --------------------------------------------------------------------------
# 1. htpasswd registry
# --------------------------------------------------------------------------

class A_Htpasswd(AuthTest):
    def test_a1_pull_with_stored_basic_credentials(self):
        reg, pg, img = E["reg_ht"], E["pg_ht"], E["img_ht"]
        self.assertEqual(pg.config["containerRegistry"]["privateBaseImageAllowList"], [])
        ref = f"{reg.host}/pg/auth:v1"
        since, reg_before = len(pg.decisions()), len(reg.requests())
        self.assert_pulled(pg, ref, img)
        self.assert_credential_lines(self.wait_blob_lines(pg, since, reg.host, "pg/auth", img),
                                     reg.host)
        # pullgate went upstream: challenged once (401), then authenticated 200s.
        upstream = [e.status for e in reg.requests()[reg_before:] if e.repository == "pg/auth"]
        self.assertIn(401, upstream, upstream)
        self.assertGreaterEqual(upstream.count(200), 1 + len(img.blob_digests), upstream)

    def test_a2_wrong_password_is_403_denied(self):
        reg, pg = E["reg_ht"], E["pg_ht_wrong"]
        ref = f"{reg.host}/pg/auth:v1"
        E["ctrd"].remove_image(ref)
        since, reg_before = len(pg.decisions()), len(reg.requests())
        cp, _ = self.pull(pg, ref)
        self.assertNotEqual(cp.returncode, 0, "pull with a wrong stored password succeeded")
        self.assertIn("403", cp.stderr, h.command_output(cp))
        self.assertIsNone(E["ctrd"].image_digest(ref))
        self.wait_decisions(pg, lambda _: lines_for(pg, since, reg.host, "pg/auth"),
                          what="the decision line of the failed pull")
        for d in lines_for(pg, since, reg.host, "pg/auth"):
            self.assertEqual((d.get("reason"), d.get("status"), d.get("credential")),
                             ("upstream_auth_failed", 403, f"auths:{reg.host}"), d)

        since = len(pg.decisions())
        r = self.get(pg, "/v2/pg/auth/manifests/v1", ns=reg.host)
        self.assert_denied_by_upstream(r, pg, since, reg.host, "pg/auth", reg.host)
        # pullgate did present the (wrong) credentials: only 401s upstream.
        upstream = [e.status for e in reg.requests()[reg_before:] if e.repository == "pg/auth"]
        self.assertTrue(upstream and set(upstream) == {401}, upstream)

    def test_a3_sighup_reloads_credentials_and_keeps_them_on_a_broken_file(self):
        reg, pg, s = E["reg_ht"], E["pg_ht_wrong"], E["secrets"]
        self.assertEqual(self.get(pg, "/v2/pg/auth/manifests/v1", ns=reg.host).status, 403)
        h.write_docker_config(pg.creds_path, {
            reg.host: {"auth": h.basic_auth_value(s["ht_user"], s["ht_pass"])}})
        pg.reload()
        r = self.get(pg, "/v2/pg/auth/manifests/v1", ns=reg.host)
        self.assertEqual(r.status, 200, pg.diagnostics())
        self.assertEqual(r.header("Docker-Content-Digest"), E["img_ht"].manifest_digest)
        # A broken file on reload: the old credentials stay, the reason is logged.
        with open(pg.creds_path, "w") as f:
            f.write('{"auths": {"' + reg.host + '": {"auth": "not base64!"')
        pg.reload()
        self.assertIn("reload failed", pg.stderr_all())
        r = self.get(pg, "/v2/pg/auth/manifests/v1", ns=reg.host)
        self.assertEqual(r.status, 200, pg.diagnostics())
        ref = f"{reg.host}/pg/auth:v1"
        E["ctrd"].remove_image(ref)
        self.assert_pulled(pg, ref, E["img_ht"])

    def test_a4_credentials_directory_wins_over_credentials_file(self):
        reg, s = E["reg_ht"], E["secrets"]
        wrong = h.write_docker_config(os.path.join(E["creds"], "credsdir-wrong.json"), {
            reg.host: {"auth": h.basic_auth_value(s["ht_user"], s["ht_wrong"])}})
        credsdir = h.make_tempdir("pgit-credentials-directory-")
        h.write_docker_config(os.path.join(credsdir, "docker-config.json"), {
            reg.host: {"auth": h.basic_auth_value(s["ht_user"], s["ht_pass"])}})
        pg = make_pullgate("credsdir", None, {reg.host: {"caFile": E["ca"].ca_cert}},
                           env={"CREDENTIALS_DIRECTORY": credsdir}, creds_path=wrong)
        r = self.get(pg, "/v2/pg/auth/manifests/v1", ns=reg.host)
        self.assertEqual(r.status, 200, pg.diagnostics())
        d = self.wait_decisions(pg, lambda ls: ls, what="a decision line")[-1]
        self.assertEqual((d.get("reason"), d.get("credential")), ("has_credentials", f"auths:{reg.host}"), d)
        self.stop(pg)

    def test_a5_client_authorization_is_not_forwarded(self):
        """An allowlisted registry, no stored credentials: the client's own
        (valid) Basic header must not reach the registry."""
        reg, s = E["reg_ht"], E["secrets"]
        pg = make_pullgate("anon", None, {reg.host: {"caFile": E["ca"].ca_cert}},
                           allow_list=[reg.host])
        since, reg_before = len(pg.decisions()), len(reg.requests())
        client_auth = "Basic " + h.basic_auth_value(s["ht_user"], s["ht_pass"])
        r = self.get(pg, "/v2/pg/auth/manifests/v1", ns=reg.host,
                     headers={"Authorization": client_auth})
        self.assertEqual(r.status, 403, r.body[:400])
        self.assertIsNone(r.header("WWW-Authenticate"))
        upstream = [e.status for e in reg.requests()[reg_before:] if e.repository == "pg/auth"]
        self.assertEqual(upstream, [401], "the registry accepted a request: client auth forwarded?")
        self.wait_decisions(pg, lambda _: lines_for(pg, since, reg.host, "pg/auth"),
                            what="decision line")
        d = lines_for(pg, since, reg.host, "pg/auth")[-1]
        self.assertEqual((d.get("reason"), d.get("status")), ("upstream_auth_failed", 403), d)
        self.stop(pg)


# --------------------------------------------------------------------------
# 2. token-auth registry
# --------------------------------------------------------------------------

class B_Token(AuthTest):
    def test_b1_pull_fetches_a_token_with_basic_credentials(self):
        reg, ts, pg, img = E["reg_tok"], E["ts"], E["pg_tok"], E["img_tok1"]
        ref = f"{reg.host}/pg/tok:v1"
        since, t_before, reg_before = len(pg.decisions()), len(ts.requests), len(reg.requests())
        self.assert_pulled(pg, ref, img)
        self.assert_credential_lines(self.wait_blob_lines(pg, since, reg.host, "pg/tok", img),
                                     reg.host)
        reqs = ts.requests_since(t_before)
        self.assertEqual(len(reqs), 1, token_desc(reqs))
        t = reqs[0]
        self.assertEqual((t.method, t.path, t.param("service"), t.scopes),
                         ("GET", "/token", SERVICE, ["repository:pg/tok:pull"]), token_desc(reqs))
        self.assertEqual((t.basic_user, t.basic_ok, t.status), (E["secrets"]["tok_user"], True, 200),
                         token_desc(reqs))
        upstream = [e.status for e in reg.requests()[reg_before:] if e.repository == "pg/tok"]
        self.assertEqual(upstream[0], 401, upstream)          # the challenge
        self.assertEqual(upstream.count(401), 1, upstream)    # then the token up front
        E["t_first_token"] = time.monotonic()

    def test_b2_cached_token_serves_another_tag_of_the_repository(self):
        reg, ts, pg, img = E["reg_tok"], E["ts"], E["pg_tok"], E["img_tok2"]
        ref = f"{reg.host}/pg/tok:v2"
        since, t_before, reg_before = len(pg.decisions()), len(ts.requests), len(reg.requests())
        self.assert_pulled(pg, ref, img)
        self.wait_blob_lines(pg, since, reg.host, "pg/tok", img)
        reqs = ts.requests_since(t_before)
        self.assertEqual(reqs, [], "token fetched again within expires_in:\n" + token_desc(reqs))
        upstream = [e.status for e in reg.requests()[reg_before:] if e.repository == "pg/tok"]
        self.assertTrue(upstream, "no upstream requests")
        self.assertNotIn(401, upstream, f"cached token not sent up front: {upstream}")
        if "t_first_token" in E:
            print(f"(cache hit {time.monotonic() - E['t_first_token']:.1f}s after the fetch, "
                  f"expires_in {ts.expires_in}s)", end=" ")

    def test_b3_concurrent_requests_share_one_token_fetch(self):
        reg, ts, pg, img = E["reg_tok"], E["ts"], E["pg_tok"], E["img_flight"]
        n = 10
        since, t_before, reg_before = len(pg.decisions()), len(ts.requests), len(reg.requests())
        results: list = [None] * n
        barrier = threading.Barrier(n)

        def one(i):
            barrier.wait()
            results[i] = self.get(pg, f"/v2/pg/flight/manifests/{img.manifest_digest}", ns=reg.host)
        ts.delay = 1.0   # every request is challenged before the token arrives
        t0 = time.monotonic()
        try:
            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            ts.delay = 0.0
        took = time.monotonic() - t0
        statuses = [r.status if r else None for r in results]
        print(f"\n  {n} concurrent manifest GETs: {took:.2f}s, statuses {statuses}", end=" ")
        self.assertEqual(statuses, [200] * n, pg.diagnostics())
        for r in results:
            self.assertEqual(r.header("Docker-Content-Digest"), img.manifest_digest)
        reqs = ts.requests_since(t_before)
        self.assertEqual(len(reqs), 1, "concurrent requests fetched their own tokens:\n" +
                         token_desc(reqs))
        self.assertEqual(reqs[0].scopes, ["repository:pg/flight:pull"])
        upstream = [e.status for e in reg.requests()[reg_before:] if e.repository == "pg/flight"]
        # All n were challenged (so all n needed a token at the same time) ...
        self.assertEqual(upstream.count(401), n, upstream)
        self.assertEqual(upstream.count(200), n, upstream)
        self.wait_decisions(pg, lambda _: len(lines_for(pg, since, reg.host, "pg/flight")) >= n)

    def test_b4_identity_token_refresh_grant(self):
        reg, ts, pg, img = E["reg_tok"], E["ts"], E["pg_tok"], E["img_idtok"]
        key = f"{reg.host}/pg/idtok"
        ref = f"{reg.host}/pg/idtok:v1"
        since, t_before = len(pg.decisions()), len(ts.requests)
        self.assert_pulled(pg, ref, img)
        self.assert_credential_lines(self.wait_blob_lines(pg, since, reg.host, "pg/idtok", img),
                                     key, rules=[reg.host])
        reqs = ts.requests_since(t_before)
        self.assertEqual(len(reqs), 1, token_desc(reqs))
        t = reqs[0]
        self.assertEqual((t.method, t.path, t.status), ("POST", "/token", 200), token_desc(reqs))
        self.assertEqual({k: v for k, v in t.form.items() if k != "refresh_token"},
                         {"grant_type": ["refresh_token"], "service": [SERVICE],
                          "scope": ["repository:pg/idtok:pull"], "client_id": ["pullgate"]})
        self.assertEqual(t.form.get("refresh_token"), [E["secrets"]["identity_token"]])
        self.assertIsNone(t.authorization, "refresh-token POST carried an Authorization header")
        self.assertEqual(t.query, {}, "refresh token grant parameters were put in the URL")

    def test_b5_registry_token_is_sent_as_bearer_up_front(self):
        reg, ts, pg, img = E["reg_tok"], E["ts"], E["pg_tok"], E["img_regtok"]
        key = f"{reg.host}/pg/regtok"
        ref = f"{reg.host}/pg/regtok:v1"
        since, t_before, reg_before = len(pg.decisions()), len(ts.requests), len(reg.requests())
        self.assert_pulled(pg, ref, img)
        self.assert_credential_lines(self.wait_blob_lines(pg, since, reg.host, "pg/regtok", img),
                                     key, rules=[reg.host])
        self.assertEqual(ts.requests_since(t_before), [])
        upstream = [e.status for e in reg.requests()[reg_before:] if e.repository == "pg/regtok"]
        self.assertTrue(upstream)
        self.assertNotIn(401, upstream, upstream)

    def test_b6_wrong_password_at_the_realm_is_403_denied(self):
        reg, ts, pg = E["reg_tok"], E["ts"], E["pg_tok"]
        key = f"{reg.host}/pg/wrongpw"
        since, t_before = len(pg.decisions()), len(ts.requests)
        r = self.get(pg, "/v2/pg/wrongpw/manifests/v1", ns=reg.host)
        reqs = ts.requests_since(t_before)
        self.assertEqual([(t.method, t.basic_user, t.basic_ok, t.status) for t in reqs],
                         [("GET", E["secrets"]["tok_user"], False, 401)], token_desc(reqs))
        self.assert_denied_by_upstream(r, pg, since, reg.host, "pg/wrongpw", key)
        self.assert_alive(pg)


# --------------------------------------------------------------------------
# 3. blob redirect to another origin
# --------------------------------------------------------------------------

class C_Redirect(AuthTest):
    def test_c1_redirected_blobs_are_fetched_without_authorization(self):
        front, store, pg, img = E["front"], E["store"], E["pg_front"], E["img_front"]
        ref = f"{front.host}/pg/front:v1"
        since = len(pg.decisions())
        self.assert_pulled(pg, ref, img)
        lines = self.wait_blob_lines(pg, since, front.host, "pg/front", img)
        self.assert_credential_lines(lines, front.host)
        sizes = {d.digest: d.size for d in [img.config] + img.layers}
        for d in lines:
            if d.get("kind") == "blob":
                self.assertEqual((d.get("status"), d.get("upstream_status"), d.get("bytes")),
                                 (200, 200, sizes[d["reference"]]), d)

        # Every blob went: front (Basic) -302-> same-origin hop (Basic kept)
        # -307-> blob store (another origin: no Authorization).
        hex_digests = {x.split(":")[1] for x in img.blob_digests}
        served = [q for q in store.requests if q["path"].split("/")[-1] in hex_digests]
        self.assertEqual({q["path"].split("/")[-1] for q in served}, hex_digests, store.requests)
        for q in store.requests:
            self.assertIsNone(q["authorization"], f"Authorization sent to another origin: {q}")
            self.assertEqual(q["query"].get("X-Amz-Signature"), [store.signature], q)
        blob_reqs = [q for q in front.requests if "/blobs/" in q["path"]]
        hops = [q for q in front.requests if q["path"].startswith("/_hop/")]
        self.assertTrue(blob_reqs and hops, front.requests)
        for q in blob_reqs + hops:
            self.assertEqual(q["authorization"], front.expected,
                             f"same-origin request without the stored credentials: {q}")

    def test_c2_client_authorization_never_reaches_the_front(self):
        front, pg = E["front"], E["pg_front"]
        before = len(front.requests)
        client = "Bearer client-own-token-" + secrets.token_hex(8)
        r = self.get(pg, f"/v2/pg/front/manifests/{E['img_front'].manifest_digest}",
                     ns=front.host, headers={"Authorization": client})
        self.assertEqual(r.status, 200, r.body[:300])
        seen = [q["authorization"] for q in front.requests[before:]]
        self.assertTrue(seen)
        self.assertNotIn(client, seen)
        self.assertEqual(set(seen), {front.expected}, seen)


    def test_c3_redirect_loop_stops_after_max_redirects(self):
        front, pg = E["front"], E["pg_front"]
        digest = "sha256:" + hashlib.sha256(b"redirected forever").hexdigest()
        since, before = len(pg.decisions()), len(front.requests)
        r = self.get(pg, f"/v2/pg/loop/blobs/{digest}", ns=front.host)
        loops = [q["path"] for q in front.requests[before:] if q["path"].startswith("/_loop/")]
        print(f"\n  redirect loop: {r.status} after following {len(loops)} hops", end=" ")
        self.assertEqual(r.status, 502, r.body[:300])
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"))
        self.assertIn("redirect", r.json()["errors"][0].get("message", ""))
        self.assertEqual(len(loops), 5, f"hops followed: {loops}")   # limits.maxRedirects
        self.assert_alive(pg)
        d = self.wait_decisions(pg, lambda _: lines_for(pg, since, front.host, "pg/loop"),
                              what="decision line for pg/loop")
        d = lines_for(pg, since, front.host, "pg/loop")[-1]
        self.assertEqual((d.get("decision"), d.get("status")), ("error", 502), d)
        self.assertTrue(str(d.get("reason")).startswith("upstream_"), d)


# --------------------------------------------------------------------------
# 5. CRI path (kubelet -> containerd -> pullgate)
# --------------------------------------------------------------------------

class D_Cri(AuthTest):
    def ctr_k8s(self, *args):
        return h.run(["ctr", "--address", E["ctrd"].address, "-n", "k8s.io", *args], check=False)

    def cri_pull(self, image: str):
        import grpc
        t0 = time.monotonic()
        try:
            ref, err = h.cri_pull_image(E["ctrd"].address, image, timeout=300), None
        except grpc.RpcError as exc:
            ref, err = None, exc
        print(f"\n  CRI PullImage {image}: {time.monotonic() - t0:.2f}s "
              f"{'ok ' + ref if err is None else 'error ' + str(err.code())}", end=" ")
        return ref, err

    def test_d1_cri_pull_of_allowed_image_goes_through_pullgate(self):
        self.assertEqual(E["ctrd"].plugins().get("io.containerd.grpc.v1.cri"), "ok",
                         "containerd's CRI plugin is not running")
        reg, pg, img = E["reg_ht"], E["pg_ht"], E["img_cri"]
        image = f"{reg.host}/pg/cri:v1"
        since, reg_before = len(pg.decisions()), len(reg.requests())
        ref, err = self.cri_pull(image)
        self.assertIsNone(err, f"{err}{pg.diagnostics()}")
        self.assertEqual(ref, img.config.digest)  # CRI's image id: the config digest
        self.assert_credential_lines(self.wait_blob_lines(pg, since, reg.host, "pg/cri", img),
                                     reg.host)
        out = self.ctr_k8s("images", "ls").stdout
        self.assertRegex(out, re.escape(image) + r"\s+\S+\s+" + re.escape(img.manifest_digest))
        self.assertTrue(any(e.repository == "pg/cri" for e in reg.requests()[reg_before:]))

    def test_d2_cri_pull_of_unlisted_registry_fails_without_contacting_it(self):
        reg, pg = E["reg_open"], E["pg_ht"]
        image = f"{reg.host}/pg/open:v1"
        since = len(pg.decisions())
        req_before, conn_before = len(reg.requests()), reg.connection_count()
        ref, err = self.cri_pull(image)
        self.assertIsNotNone(err, f"CRI pull of an unlisted registry succeeded: {ref}")
        self.assertIn("403", err.details() or "", err)
        self.wait_decisions(pg, lambda _: lines_for(pg, since, reg.host, "pg/open"),
                          what=f"deny line for {reg.host}/pg/open")
        for d in lines_for(pg, since, reg.host, "pg/open"):
            self.assertEqual((d.get("decision"), d.get("reason"), d.get("status")),
                             ("deny", "not_allowlisted", 403), d)
        self.assertEqual(reg.requests()[req_before:], [], "registry-open got requests")
        self.assertEqual(reg.connection_count(), conn_before, "registry-open got TCP connections")
        self.assertNotIn(image, self.ctr_k8s("images", "ls").stdout)


# --------------------------------------------------------------------------
# 4. no secret in any log (runs last)
# --------------------------------------------------------------------------

class Z_NoSecrets(AuthTest):
    def test_z_no_secret_in_decision_logs_stderr_or_error_bodies(self):
        s, ts = E["secrets"], E["ts"]
        needles = {name: s[name] for name in
                   ("ht_pass", "ht_wrong", "tok_pass", "tok_wrong", "identity_token",
                    "registry_token", "front_pass")}
        for user, pw in (("ht_user", "ht_pass"), ("ht_user", "ht_wrong"), ("tok_user", "tok_pass"),
                         ("tok_user", "tok_wrong"), ("front_user", "front_pass")):
            needles[f"base64({user}:{pw})"] = h.basic_auth_value(s[user], s[pw])
        issued = [t for t in ts.issued]
        self.assertGreaterEqual(len([r for r in ts.requests if r.token]), 3,
                                "too few tokens issued: the scan would prove little")
        for i, tok in enumerate(issued):
            needles[f"jwt#{i}"] = tok
            needles[f"jwt#{i} signature"] = tok.rsplit(".", 1)[1]
        scanned = 0
        found = []
        sources = []
        for pg in E["pullgates"]:
            for what, path in (("decision log", pg.decision_log_path), ("stderr", pg.stderr_path),
                               ("stdout", pg.stdout_path)):
                try:
                    with open(path, errors="replace") as f:
                        sources.append((f"pullgate[{pg.label}] {what}", f.read()))
                except FileNotFoundError:
                    pass
        sources.append(("error bodies/headers seen by clients",
                        b"\n".join(E["bodies"]).decode(errors="replace")))
        for where, text in sources:
            scanned += len(text)
            for name, value in needles.items():
                if value in text:
                    found.append(f"{name} in {where}")
        print(f"\n  scanned {scanned} bytes from {len(sources)} sources for "
              f"{len(needles)} secret strings ({len(issued)} issued JWTs)", end=" ")
        self.assertGreater(sum(len(t) for w, t in sources if "decision log" in w), 0)
        self.assertEqual(found, [])


def main() -> int:
    return h.suite_main(sys.modules[__name__], "pullgate-auth")


if __name__ == "__main__":
    sys.exit(main())
