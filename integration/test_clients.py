#!/usr/bin/python3
"""podman, skopeo and buildah (containers/image) pulling through pullgate by the
registries.conf drop-in that ``pullgate registries-conf`` writes.

Everything runs in one private network namespace (only ``lo``) and, for the
clients, pullgate and the registries, a private mount namespace in which a
temp file is bind-mounted over /etc/hosts and a temp dir over
/etc/containers, so registry names resolve to loopback addresses and no
containers config of the machine is read:

  registry.pullgate.test   127.0.0.2:443, TLS (test CA), htpasswd; on
                           pullgate's list only as registry.pullgate.test/team
                           (credential key), so team/* is allowed and
                           other/* is not
  unrouted.pullgate.test   127.0.0.3:443, TLS, anonymous; named nowhere in
                           pullgate's config nor in the drop-in
  pullgate                 plain HTTP on 127.0.0.1:<port>
  podman/skopeo/buildah    HOME, storage root, auth file: temp; the clients
                           trust the test CA (SSL_CERT_FILE), so a pull that
                           went around pullgate would succeed

Run: /usr/bin/python3 integration/test_clients.py --pullgate build/pullgate [-k PATTERN] [--keep]
The last line printed is ``N passed, N failed``; exit status 0 only if all passed.
"""

import ctypes
import json
import os
import subprocess
import sys
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PULLGATE_BINARY = ""   # set by main()
E: dict = {}           # module fixtures, filled by setUpModule

REGISTRY = "registry.pullgate.test"
REGISTRY_IP = "127.0.0.2"
UNROUTED = "unrouted.pullgate.test"
UNROUTED_IP = "127.0.0.3"
USER = ("alice", "pg-clients-secret")

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_BIND = 0x1000


def _mount(source, target, flags) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source, target, None, ctypes.c_ulong(flags), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def enter_private_mounts(hosts_text: str) -> str:
    """Move this process into a new mount namespace (propagation private, so
    nothing reaches the machine's mounts) with HOSTS_TEXT over /etc/hosts and
    an empty temp dir over /etc/containers; returns that dir. Must run before
    any thread is started (unshare(CLONE_NEWNS) needs an unshared fs struct)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    _mount(None, b"/", MS_REC | MS_PRIVATE)
    d = h.make_tempdir("pgit-etc-")
    hosts = os.path.join(d, "hosts")
    with open(hosts, "w") as f:
        f.write(hosts_text)
    _mount(hosts.encode(), b"/etc/hosts", MS_BIND)
    etc_containers = os.path.join(d, "containers")
    os.makedirs(os.path.join(etc_containers, "registries.conf.d"))
    if not os.path.isdir("/etc/containers"):
        raise FileNotFoundError("/etc/containers is missing: install podman (scripts/install-deps.sh)")
    _mount(etc_containers.encode(), b"/etc/containers", MS_BIND)
    return "/etc/containers"


class NamedRegistry(h.Registry):
    """A harness registry served as https://NAME on IP:443 with a cert for NAME."""

    def __init__(self, ca: h.TestCA, name: str, ip: str, **kwargs) -> None:
        crt, key = ca.issue(name, dns=[name])
        super().__init__(ca, name=name, port=443, start=False,
                         extra_config={"http": {"addr": f"{ip}:443",
                                                "tls": {"certificate": crt, "key": key}}},
                         **kwargs)
        self.host = name
        self.url = f"https://{name}"
        self.ip = ip
        self.start()


class Clients:
    """podman and skopeo with nothing of the machine's configuration: a temp
    HOME, storage root and run root (vfs), an empty auth file, the system CA
    bundle replaced by the test CA, /etc/containers from the private mount."""

    def __init__(self, ca: h.TestCA, etc_containers: str) -> None:
        self.dir = h.make_tempdir("pgit-clients-")
        self.etc = etc_containers
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        self.auth_file = os.path.join(self.dir, "auth.json")
        with open(self.auth_file, "w") as f:
            f.write("{}")
        self.registries_conf = os.path.join(self.etc, "registries.conf")
        self.policy = os.path.join(self.etc, "policy.json")
        self.set_registries_conf("")
        self.set_policy({"default": [{"type": "insecureAcceptAnything"}]})
        self.env = h.clean_env(HOME=self.home, XDG_RUNTIME_DIR=self.dir,
                               XDG_CONFIG_HOME=os.path.join(self.home, ".config"),
                               REGISTRY_AUTH_FILE=self.auth_file,
                               CONTAINERS_REGISTRIES_CONF=self.registries_conf,
                               CONTAINERS_CONF=os.path.join(self.dir, "containers.conf"),
                               CONTAINERS_STORAGE_CONF=os.path.join(self.dir, "storage.conf"),
                               SSL_CERT_FILE=ca.ca_cert, SSL_CERT_DIR=ca.cert_dir,
                               TMPDIR=self.dir)
        with open(os.path.join(self.dir, "containers.conf"), "w") as f:
            f.write("")
        with open(os.path.join(self.dir, "storage.conf"), "w") as f:
            f.write('[storage]\ndriver = "vfs"\n'
                    f'graphroot = "{self.dir}/storage"\nrunroot = "{self.dir}/run"\n')
        self.n = 0

    def set_registries_conf(self, text: str) -> None:
        """The main registries.conf (no search registries, then TEXT)."""
        with open(self.registries_conf, "w") as f:
            f.write("unqualified-search-registries = []\n" + text)

    def set_dropin(self, text: str, name: str = "50-pullgate.conf") -> str:
        path = os.path.join(self.etc, "registries.conf.d", name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def clear_dropins(self) -> None:
        d = os.path.join(self.etc, "registries.conf.d")
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))

    def set_policy(self, policy: dict) -> None:
        with open(self.policy, "w") as f:
            json.dump(policy, f)

    def skopeo(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return h.run(["skopeo", "--policy", self.policy, "--registries-conf", self.registries_conf,
                      "--tmpdir", self.dir, *args], check=False, timeout=timeout, env=self.env)

    def skopeo_copy(self, ref: str) -> tuple[subprocess.CompletedProcess, str]:
        """skopeo copy docker://REF to a fresh OCI layout; returns the process
        and the digest file's content ("" on failure)."""
        self.n += 1
        dest = os.path.join(self.dir, f"copy-{self.n}")
        digestfile = dest + ".digest"
        cp = self.skopeo("copy", "--preserve-digests", "--digestfile", digestfile, f"docker://{ref}", f"oci:{dest}:x")
        digest = ""
        if cp.returncode == 0:
            with open(digestfile) as f:
                digest = f.read().strip()
        return cp, digest

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        root = os.path.join(self.dir, "storage")
        return h.run(["podman", "--root", root, "--runroot", os.path.join(self.dir, "run"),
                      "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                      "--events-backend", "none", "--tmpdir", os.path.join(self.dir, "libpod"),
                      *args], check=False, timeout=timeout, env=self.env)

    def buildah(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return h.run(["buildah", "--root", os.path.join(self.dir, "storage"),
                      "--runroot", os.path.join(self.dir, "run"), "--storage-driver", "vfs",
                      "--registries-conf", self.registries_conf, *args],
                     check=False, timeout=timeout, env=self.env)

    def podman_pull(self, ref: str) -> subprocess.CompletedProcess:
        return self.podman("pull", "--signature-policy", self.policy, "--authfile", self.auth_file, ref)

    def podman_digest(self, ref: str) -> str:
        cp = self.podman("image", "inspect", "--format", "{{.Digest}}", ref)
        return cp.stdout.strip() if cp.returncode == 0 else ""


def push_image(reg: h.Registry, repo: str, layers: list, tag: str = "v1") -> h.ImageInfo:
    """Build an OCI layout with ``layers`` and push it to ``reg`` as repo:tag."""
    info = h.build_oci_layout(os.path.join(E["layouts"], f"{reg.host}_{repo.replace('/', '_')}"),
                              layers, tag)
    h.push_layout(info.layout_dir, reg, repo, tag)
    return info


def setUpModule():
    if not os.access(PULLGATE_BINARY, os.X_OK):
        raise FileNotFoundError(f"pullgate binary not found or not executable: {PULLGATE_BINARY}")
    etc = E["etc_containers"]
    ca = h.TestCA()
    reg = NamedRegistry(ca, REGISTRY, REGISTRY_IP, htpasswd=USER)
    unrouted = NamedRegistry(ca, UNROUTED, UNROUTED_IP)
    E.update(ca=ca, reg=reg, unrouted=unrouted, layouts=h.make_tempdir("pgit-layouts-"))
    E["team"] = push_image(reg, "team/app", [b"team layer\n", {"etc/motd": b"team\n"}])
    E["other"] = push_image(reg, "other/app", [b"other team's layer, not allowlisted\n"])
    E["public"] = push_image(unrouted, "pub/app", [b"a registry pullgate does not route\n"])
    creds = h.write_docker_config(
        os.path.join(h.make_tempdir("pgit-creds-"), "config.json"),
        {f"{REGISTRY}/team": {"auth": h.basic_auth_value(*USER)}})
    E["pg"] = h.Pullgate(PULLGATE_BINARY, allow_list=[],
                         registries={REGISTRY: {"caFile": ca.ca_cert}},
                         extra_config={"credentialsFile": creds})
    E["creds"] = creds
    E["clients"] = Clients(ca, etc)
    E["dropin"] = registries_conf(E["pg"])


def registries_conf(pg: h.Pullgate, *extra: str) -> str:
    """``pullgate registries-conf --config <pg's config> EXTRA...``: the drop-in text."""
    cp = h.run([PULLGATE_BINARY, "registries-conf", "--config", pg.config_path, *extra])
    return cp.stdout


def explain(pg: h.Pullgate, ref: str) -> tuple[int, str]:
    cp = h.run([PULLGATE_BINARY, "explain", "--config", pg.config_path, ref], check=False)
    return cp.returncode, cp.stdout + cp.stderr


def diagnostics(cp=None) -> str:
    """Client output, pullgate's stderr tail and last decision lines, for failure messages."""
    pg = E["pg"]
    lines = "\n".join(json.dumps(d) for d in pg.decisions()[-10:])
    out = ""
    if cp is not None:
        out = f"\n--- client stdout ---\n{cp.stdout[-1500:]}\n--- client stderr ---\n{cp.stderr[-2500:]}"
    return (out + f"\n--- pullgate stderr (tail) ---\n{pg.stderr_text(2000)}"
            f"\n--- decision log (tail) ---\n{lines}")


def paths(reg: h.Registry, since: int) -> list[tuple[str, str, int]]:
    """(method, path, status) of the registry's requests since index SINCE."""
    return [(e.method, e.path, e.status) for e in reg.requests()[since:]]


class ClientsTest(unittest.TestCase):
    """Each test starts from the generated drop-in, an accept-anything
    policy.json and an empty image store."""

    def setUp(self):
        c = E["clients"]
        c.clear_dropins()
        c.set_dropin(E["dropin"])
        c.set_policy({"default": [{"type": "insecureAcceptAnything"}]})
        c.podman("rmi", "--all", "--force")

    def tearDown(self):
        if not E["pg"].alive():
            self.fail("pullgate exited:\n" + E["pg"].stderr_text())

    def lines_for(self, since: int, repository: str) -> list[dict]:
        return [d for d in E["pg"].decisions()[since:]
                if d.get("registry") == REGISTRY and d.get("repository") == repository]


class TestDropin(ClientsTest):

    def test_routes_the_credential_key_host_without_fallback(self):
        pg = E["pg"]
        doc = tomllib.loads(E["dropin"])
        regs = doc.get("registry", [])
        self.assertEqual(len(regs), 1, E["dropin"])
        self.assertEqual(regs[0]["prefix"], REGISTRY)
        self.assertEqual(regs[0]["location"], f"{pg.listen}/{REGISTRY}")
        self.assertIs(regs[0].get("insecure"), True)
        self.assertNotIn("mirror", regs[0])
        self.assertNotIn(UNROUTED, E["dropin"])

    def test_mirror_option_and_refused_mirror_do_not_fall_back(self):
        port = h.free_port()
        text = registries_conf(E["pg"], "--mirror", f"127.0.0.1:{port}")
        self.assertEqual(tomllib.loads(text)["registry"][0]["location"], f"127.0.0.1:{port}/{REGISTRY}")
        c, reg = E["clients"], E["reg"]
        c.set_dropin(text)
        before = len(reg.requests())
        cp, _ = c.skopeo_copy(f"{REGISTRY}/team/app:v1")
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("connection refused", cp.stderr)
        self.assertEqual(paths(reg, before), [])


    def test_generated_blocks_load_and_hold(self):
        # A *.domain entry and a registry with a port become blocked entries
        # (an IPv6 one is left out); the clients load the file, the routed
        # exact host still wins over the wildcard, the rest is refused before
        # any request.
        pg, c, un = E["pg"], E["clients"], E["unrouted"]
        cfg = os.path.join(h.make_tempdir("pgit-rcconf-"), "config.yaml")
        with open(cfg, "w") as f:
            f.write(h.to_yaml({"listen": pg.listen,
                               "containerRegistry": {"privateBaseImageAllowList": [
                                   "*.pullgate.test", "127.0.0.9:5443", "[::1]:5000"]},
                               "credentialsFile": E["creds"]}))
        cp = h.run([PULLGATE_BINARY, "registries-conf", "--config", cfg])
        self.assertIn("*.pullgate.test is blocked", cp.stderr)
        self.assertIn("[::1]:5000 is not written", cp.stderr)
        prefixes = {r["prefix"]: r for r in tomllib.loads(cp.stdout)["registry"]}
        self.assertEqual(set(prefixes), {REGISTRY, "*.pullgate.test", "127.0.0.9:5443"})
        c.set_dropin(cp.stdout)
        ok, digest = c.skopeo_copy(f"{REGISTRY}/team/app:v1")
        self.assertEqual(ok.returncode, 0, diagnostics(ok))
        self.assertEqual(digest, E["team"].manifest_digest)
        since = len(un.requests())
        for ref, blocked in ((f"{UNROUTED}/pub/app:v1", "*.pullgate.test"),
                             ("127.0.0.9:5443/pub/app:v1", "127.0.0.9:5443")):
            with self.subTest(ref=ref):
                refused, _ = c.skopeo_copy(ref)
                self.assertNotEqual(refused.returncode, 0)
                self.assertIn(f"registry {blocked} is blocked", refused.stderr)
        self.assertEqual(paths(un, since), [])


class TestThroughPullgate(ClientsTest):

    def assert_pulled_through_pullgate(self, since_pg: int, since_reg: int, repository: str) -> None:
        pg, reg = E["pg"], E["reg"]
        lines = pg.wait_decisions(lambda _: any(d.get("kind") == "blob" for d in self.lines_for(since_pg, repository)),
                                  what=f"decision lines for {repository}")
        mine = [d for d in lines[since_pg:] if d.get("repository") == repository]
        self.assertTrue(mine)
        for d in mine:
            self.assertEqual((d["registry"], d["decision"], d["reason"]),
                             (REGISTRY, "allow", "has_credentials"), json.dumps(d))
            self.assertEqual(d["credential"], f"auths:{REGISTRY}/team")
        seen = reg.requests()[since_reg:]
        mine_at_reg = [e for e in seen if e.repository == repository]
        self.assertTrue(mine_at_reg)
        # Every request for it came from pullgate, and the registry (htpasswd:
        # 401 without credentials) served them: the client holds none, so the
        # credentials were pullgate's.
        self.assertTrue(all(e.user_agent.startswith("pullgate/") for e in mine_at_reg),
                        [(e.method, e.path, e.status, e.user_agent) for e in mine_at_reg])
        self.assertTrue(any(e.status == 200 and "/manifests/" in e.path for e in mine_at_reg))
        self.assertTrue(all(e.status in (200, 401) for e in mine_at_reg))

    def test_skopeo_copy_with_injected_credentials(self):
        c, pg, reg, img = E["clients"], E["pg"], E["reg"], E["team"]
        since_pg, since_reg = len(pg.decisions()), len(reg.requests())
        cp, digest = c.skopeo_copy(f"{REGISTRY}/team/app:v1")
        self.assertEqual(cp.returncode, 0, diagnostics(cp))
        self.assertEqual(digest, img.manifest_digest)
        self.assert_pulled_through_pullgate(since_pg, since_reg, "team/app")

    def test_podman_pull_with_injected_credentials(self):
        c, pg, reg, img = E["clients"], E["pg"], E["reg"], E["team"]
        since_pg, since_reg = len(pg.decisions()), len(reg.requests())
        cp = c.podman_pull(f"{REGISTRY}/team/app:v1")
        self.assertEqual(cp.returncode, 0, diagnostics(cp))
        self.assertEqual(c.podman_digest(f"{REGISTRY}/team/app:v1"), img.manifest_digest)
        self.assert_pulled_through_pullgate(since_pg, since_reg, "team/app")
        rc, text = explain(pg, f"{REGISTRY}/team/app:v1")
        self.assertEqual(rc, 0, text)
        self.assertIn(f"{REGISTRY}/team", text)

    def test_buildah_pull_with_injected_credentials(self):
        c, pg, reg, img = E["clients"], E["pg"], E["reg"], E["team"]
        since_pg, since_reg = len(pg.decisions()), len(reg.requests())
        cp = c.buildah("pull", "--signature-policy", c.policy, "--authfile", c.auth_file,
                       f"{REGISTRY}/team/app:v1")
        self.assertEqual(cp.returncode, 0, diagnostics(cp))
        self.assertEqual(c.podman_digest(f"{REGISTRY}/team/app:v1"), img.manifest_digest)
        self.assert_pulled_through_pullgate(since_pg, since_reg, "team/app")
        cp = c.buildah("pull", "--signature-policy", c.policy, "--authfile", c.auth_file,
                       f"{REGISTRY}/other/app:v1")
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("denied:", cp.stderr)

    def test_skopeo_inspect_no_tags(self):
        c, pg, img = E["clients"], E["pg"], E["team"]
        since = len(pg.decisions())
        cp = c.skopeo("inspect", "--no-tags", f"docker://{REGISTRY}/team/app:v1")
        self.assertEqual(cp.returncode, 0, diagnostics(cp))
        self.assertEqual(json.loads(cp.stdout)["Digest"], img.manifest_digest)
        pg.wait_decisions(lambda _: self.lines_for(since, "team/app"), what="inspect's decision lines")

    def test_tag_listing_goes_to_the_registry_itself(self):
        # containers/image lists tags under the original name: `skopeo
        # inspect` (without --no-tags) and `skopeo list-tags` ask the registry
        # directly, around the rewrite (here 401: the client holds nothing).
        c, pg, reg = E["clients"], E["pg"], E["reg"]
        for args in (("inspect", f"docker://{REGISTRY}/team/app:v1"),
                     ("list-tags", f"docker://{REGISTRY}/team/app")):
            with self.subTest(command=args[0]):
                since_pg, since_reg = len(pg.decisions()), len(reg.requests())
                cp = c.skopeo(*args)
                self.assertNotEqual(cp.returncode, 0)
                direct = [e for e in reg.requests()[since_reg:] if e.path.startswith("/v2/team/app/tags/list")]
                self.assertTrue(direct, paths(reg, since_reg))
                self.assertTrue(all(e.status == 401 and e.user == "-" for e in direct),
                                [(e.path, e.status, e.user) for e in direct])
                self.assertFalse([d for d in pg.decisions()[since_pg:] if d.get("kind") == "tags"])

    def test_outside_the_prefix_is_refused_by_pullgate_before_the_registry(self):
        c, pg, reg = E["clients"], E["pg"], E["reg"]
        for tool in ("skopeo", "podman"):
            with self.subTest(tool=tool):
                since_pg, since_reg = len(pg.decisions()), len(reg.requests())
                ref = f"{REGISTRY}/other/app:v1"
                cp = c.skopeo_copy(ref)[0] if tool == "skopeo" else c.podman_pull(ref)
                self.assertNotEqual(cp.returncode, 0, diagnostics(cp))
                # What the user sees: pullgate's 403 DENIED message, naming the key.
                self.assertIn("denied:", cp.stderr)
                self.assertIn(REGISTRY, cp.stderr)
                lines = pg.wait_decisions(lambda _: self.lines_for(since_pg, "other/app"),
                                          what="the denial's decision line")
                d = [x for x in lines[since_pg:] if x.get("repository") == "other/app"][0]
                self.assertEqual((d["decision"], d["reason"], d["status"]), ("deny", "not_allowlisted", 403))
                self.assertEqual(paths(reg, since_reg), [])
        rc, text = explain(pg, f"{REGISTRY}/other/app:v1")
        self.assertEqual(rc, 1, text)

    def test_a_mirror_entry_would_fall_back_around_pullgate(self):
        # Why the drop-in rewrites `location`: the same route written as a
        # [[registry.mirror]] lets the client go to the registry itself after
        # pullgate's denial.
        c, pg, reg = E["clients"], E["pg"], E["reg"]
        c.set_dropin(f'[[registry]]\nprefix = "{REGISTRY}"\nlocation = "{REGISTRY}"\n'
                     f'[[registry.mirror]]\nlocation = "{pg.listen}/{REGISTRY}"\ninsecure = true\n')
        since_pg, since_reg = len(pg.decisions()), len(reg.requests())
        cp, _ = c.skopeo_copy(f"{REGISTRY}/other/app:v1")
        self.assertNotEqual(cp.returncode, 0)  # the client holds no credentials
        pg.wait_decisions(lambda _: self.lines_for(since_pg, "other/app"), what="the denial's decision line")
        direct = [p for p in paths(reg, since_reg) if "/other/app/" in p[1]]
        self.assertTrue(direct, "the client did not fall back to the registry")
        self.assertTrue(all(s == 401 for _, _, s in direct), direct)


class TestUnrouted(ClientsTest):
    """A registry the drop-in does not name: what blocked and policy.json do."""

    REF = f"{UNROUTED}/pub/app:v1"

    def test_not_routed_is_pulled_directly(self):
        c, un, pg = E["clients"], E["unrouted"], E["pg"]
        since, since_pg = len(un.requests()), len(pg.decisions())
        cp, digest = c.skopeo_copy(self.REF)
        self.assertEqual(cp.returncode, 0, diagnostics(cp))
        self.assertEqual(digest, E["public"].manifest_digest)
        seen = paths(un, since)
        self.assertIn(("GET", "/v2/pub/app/manifests/v1", 200), seen)
        self.assertEqual(len([p for p in seen if "/blobs/" in p[1]]), 2, seen)
        self.assertEqual(pg.decisions()[since_pg:], [])

    def test_blocked_prefix_refuses_before_any_request(self):
        c, un = E["clients"], E["unrouted"]
        for prefix, location in ((UNROUTED, UNROUTED), ("*.pullgate.test", None)):
            c.set_dropin(f'[[registry]]\nprefix = "{prefix}"\n' +
                         (f'location = "{location}"\n' if location else "") + "blocked = true\n",
                         name="60-block.conf")
            for tool in ("skopeo", "podman", "inspect"):
                with self.subTest(prefix=prefix, tool=tool):
                    since = len(un.requests())
                    cp = (c.skopeo_copy(self.REF)[0] if tool == "skopeo" else
                          c.podman_pull(self.REF) if tool == "podman" else
                          c.skopeo("inspect", "--no-tags", f"docker://{self.REF}"))
                    self.assertNotEqual(cp.returncode, 0)
                    self.assertIn(f"registry {prefix} is blocked", cp.stderr)
                    self.assertEqual(paths(un, since), [])
        # The exact host routed by the drop-in still wins over *.pullgate.test.
        cp, digest = c.skopeo_copy(f"{REGISTRY}/team/app:v1")
        self.assertEqual(cp.returncode, 0, diagnostics(cp))
        self.assertEqual(digest, E["team"].manifest_digest)

    def test_blocked_without_location_breaks_every_pull(self):
        c = E["clients"]
        c.set_dropin(f'[[registry]]\nprefix = "{UNROUTED}"\nblocked = true\n', name="60-block.conf")
        cp, _ = c.skopeo_copy(f"{REGISTRY}/team/app:v1")
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("location is unset", cp.stderr)

    def test_policy_json_rejects_after_the_manifest(self):
        c, un = E["clients"], E["unrouted"]
        c.set_policy({"default": [{"type": "reject"}],
                      "transports": {"docker": {REGISTRY: [{"type": "insecureAcceptAnything"}]}}})
        for tool in ("skopeo", "podman"):
            with self.subTest(tool=tool):
                since = len(un.requests())
                cp = c.skopeo_copy(self.REF)[0] if tool == "skopeo" else c.podman_pull(self.REF)
                self.assertNotEqual(cp.returncode, 0)
                self.assertIn("rejected by policy", cp.stderr)
                # The registry still sees the ping and the manifest, no blob.
                self.assertEqual(paths(un, since), [("GET", "/v2/", 200),
                                                    ("GET", "/v2/pub/app/manifests/v1", 200)])
        since = len(un.requests())
        cp = c.skopeo("inspect", "--no-tags", f"docker://{self.REF}")
        self.assertEqual(cp.returncode, 0, "skopeo inspect consults policy.json now: " + cp.stderr)
        self.assertTrue(paths(un, since))
        # policy.json matches the name as written: the routed registry is accepted.
        cp, digest = c.skopeo_copy(f"{REGISTRY}/team/app:v1")
        self.assertEqual(cp.returncode, 0, diagnostics(cp))
        self.assertEqual(digest, E["team"].manifest_digest)


def before_tests(_args) -> None:
    E["etc_containers"] = enter_private_mounts(
        "127.0.0.1 localhost\n"
        f"{REGISTRY_IP} {REGISTRY}\n"
        f"{UNROUTED_IP} {UNROUTED}\n")


def main() -> int:
    return h.suite_main(sys.modules[__name__], "pullgate-clients", before_tests=before_tests)


if __name__ == "__main__":
    sys.exit(main())
