#!/usr/bin/python3
"""Credential sources that rotate: docker credential helpers
and kubelet image credential provider plugins, end to end.

Everything runs in one private network namespace (only ``lo``):
  registry-pass      docker-registry, TLS + htpasswd; its password lives in a
                     real ``pass`` store, read by Debian's real
                     ``docker-credential-pass`` (a throwaway GnuPG key
                     without passphrase, in a temp HOME)
  registry-prov      docker-registry, TLS + htpasswd; its password comes from
                     provider plugins (python3 scripts written here that
                     speak the kubelet's CredentialProviderRequest/Response)
  registry-unlisted  docker-registry, TLS, no auth, on no list, counting
                     connections: a provider pattern matches it, nothing allows it
  registry-open      docker-registry, TLS, no auth: pulled under
                     ``unlistedRegistries: anonymous``
  pullgate           one instance per scenario
  containerd         ctr pulls through each pullgate's no-bypass hosts dir

Run: /usr/bin/python3 integration/test_credentials.py --pullgate build/pullgate [-k PATTERN] [--keep]
Needs root and the Debian packages of test_pull.py plus
golang-docker-credential-helpers, pass and gnupg.
Prints the measured figures (helper/plugin runs per 100 pulls, cached and
uncached latency, RSS before and after 1000 helper runs) as ``figure:`` lines.
"""

import json
import os
import secrets
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PULLGATE_BINARY = ""   # set by main()
E: dict = {}           # module fixtures, filled by setUpModule
SECRETS: list = []     # every secret handed to any source: never in a log, error or metric

PLUGIN = r'''#!/usr/bin/python3
# A kubelet image credential provider plugin (credentialprovider.kubelet.k8s.io/v1):
# argv[1] is its behaviour, $PLUGIN_STATE its directory (calls.log, password).
import json, os, sys, time
state = os.environ["PLUGIN_STATE"]
mode = sys.argv[1]
req = json.load(sys.stdin)
with open(os.path.join(state, "calls.log"), "a") as f:
    f.write(json.dumps({"mode": mode, "image": req.get("image"), "kind": req.get("kind"),
                        "apiVersion": req.get("apiVersion"), "pid": os.getpid(),
                        "env": sorted(os.environ)}) + "\n")
if mode == "hang":
    time.sleep(3600)
if mode == "garbage":
    print("<html>this is not a CredentialProviderResponse</html>")
    sys.exit(0)
if mode == "fail":
    sys.stderr.write("cannot reach the metadata service; last password was " +
                     open(os.path.join(state, "password")).read().strip() + "\n")
    sys.exit(3)
key_type, duration = {"image": ("Image", "1h"), "registry": ("Registry", "1h"), "global": ("Global", "1h"),
                      "zero": ("Registry", "0s"), "default": ("Registry", None)}[mode]
resp = {"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderResponse",
        "cacheKeyType": key_type,
        "auth": {os.environ["AUTH_PATTERN"]: {"username": os.environ["AUTH_USER"],
                                              "password": open(os.path.join(state, "password")).read().strip()}}}
if duration is not None:
    resp["cacheDuration"] = duration
print(json.dumps(resp))
'''

LEAKY_HELPER = r'''#!/bin/sh
# A docker credential helper that fails and prints a stored secret on stderr.
read server
echo "backend error for $server: token %s rejected" >&2
exit 4
'''

FAST_HELPER = r'''#!/bin/sh
# A docker credential helper answering from a file (for the RSS and latency figures).
read server
printf '{"ServerURL":"%%s","Username":"%s","Secret":"%%s"}\n' "$server" "$(cat %s)"
'''


def secret(prefix: str) -> str:
    s = f"{prefix}{secrets.token_hex(12)}"
    SECRETS.append(s)
    return s


def push_image(reg: h.Registry, repo: str, content: bytes, tag: str = "v1") -> h.ImageInfo:
    d = os.path.join(E["layouts"], f"{reg.name}_{repo.replace('/', '_')}_{tag}")
    info = h.build_oci_layout(d, [content], tag)
    h.push_layout(info.layout_dir, reg, repo, tag)
    return info


def set_htpasswd(reg: h.Registry, user: str, password: str) -> None:
    """Change the registry's only user's password and restart it (same port)."""
    line = h.run(["htpasswd", "-Bbn", user, password]).stdout.strip()
    with open(os.path.join(reg.dir, "htpasswd"), "w") as f:
        f.write(line + "\n")
    reg.stop()
    reg.start()
    reg.credentials = (user, password)


def pass_env() -> dict:
    return h.clean_env(HOME=E["pass_home"], GNUPGHOME=None, PASSWORD_STORE_DIR=None)


def pass_store(server: str, user: str, password: str) -> None:
    """Store credentials through the helper itself, as `docker login` would."""
    cp = subprocess.run(["docker-credential-pass", "store"], env=pass_env(), capture_output=True, text=True,
                        input=json.dumps({"ServerURL": server, "Username": user, "Secret": password}), timeout=60)
    if cp.returncode != 0:
        raise RuntimeError(f"docker-credential-pass store failed ({cp.returncode}): {cp.stderr[-2000:]}")


def write_plugin(bin_dir: str, name: str, text: str = PLUGIN) -> None:
    path = os.path.join(bin_dir, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def plugin_calls(name: str) -> list:
    try:
        with open(os.path.join(E["plugin_state"][name], "calls.log")) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def make_pullgate(name: str, *, docker_config=None, allow_list=(), extra=None, env=None) -> h.Pullgate:
    cfg = dict(extra or {})
    if docker_config is not None:
        path = os.path.join(E["creds"], f"{name}.json")
        with open(path, "w") as f:
            json.dump(docker_config, f)
        cfg["credentialsFile"] = path
    registries = {r.host: {"caFile": E["ca"].ca_cert} for r in E["registries"]}
    pg = h.Pullgate(PULLGATE_BINARY, allow_list=allow_list, registries=registries,
                    admin_port=h.free_port(), extra_config=cfg, env=env)
    pg.label = name
    pg.hosts_dir = h.make_tempdir(f"pgit-hosts-{name}-")
    h.write_no_bypass_hosts(pg.hosts_dir, pg.url)
    E["pullgates"].append(pg)
    return pg


def children_of(pid: int) -> list:
    """Live child processes of ``pid`` (zombies included: they are unreaped children)."""
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        if p.isdigit() and stat.rsplit(")", 1)[1].split()[1] == str(pid):
            out.append(int(p))
    return out


def metrics(pg: h.Pullgate) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{pg.admin_port}/metrics", timeout=5) as r:
        return r.read().decode()


def runs(pg: h.Pullgate, source: str, result: str = "") -> int:
    """pullgate_credential_source_runs_total for ``source`` (all results, or one)."""
    total = 0
    for line in metrics(pg).splitlines():
        if line.startswith("pullgate_credential_source_runs_total{") and f'source="{source}"' in line:
            if not result or f'result="{result}"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def manifest(pg: h.Pullgate, reg: h.Registry, repo: str, ref: str = "v1", method: str = "GET",
             timeout: float = 30) -> h.HttpResponse:
    return pg.get(f"/v2/{repo}/manifests/{ref}", method=method, ns=reg.host,
                  headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT}, timeout=timeout)


def last_line(pg: h.Pullgate, reg: h.Registry, repo: str) -> dict:
    lines = pg.wait_decisions(lambda ls: any(d.get("registry") == reg.host and d.get("repository") == repo
                                             for d in ls), what=f"a line for {reg.host}/{repo}")
    return [d for d in lines if d.get("registry") == reg.host and d.get("repository") == repo][-1]


def setUpModule():
    if not os.access(PULLGATE_BINARY, os.X_OK):
        raise FileNotFoundError(f"pullgate binary not found or not executable: {PULLGATE_BINARY}")
    t0 = time.monotonic()
    ca = h.TestCA()
    E.update(ca=ca, layouts=h.make_tempdir("pgit-layouts-"), creds=h.make_tempdir("pgit-creds-"),
             pullgates=[], plugin_state={})
    s = E["s"] = {"pass_user": "puller", "pass_pw": secret("passpw"), "prov_user": "AWS",
                  "prov_pw": secret("provpw"), "leak": secret("leaked")}

    reg_pass = h.Registry(ca, name="registry-pass", htpasswd=(s["pass_user"], s["pass_pw"]))
    reg_prov = h.Registry(ca, name="registry-prov", htpasswd=(s["prov_user"], s["prov_pw"]))
    reg_unlisted = h.Registry(ca, name="registry-unlisted", count_connections=True)
    reg_open = h.Registry(ca, name="registry-open")
    E.update(reg_pass=reg_pass, reg_prov=reg_prov, reg_unlisted=reg_unlisted, reg_open=reg_open,
             registries=[reg_pass, reg_prov, reg_unlisted, reg_open])
    E["img_pass"] = push_image(reg_pass, "pg/pass", b"behind docker-credential-pass\n")
    E["img_pass2"] = push_image(reg_pass, "pg/rotated", b"pulled after the password changed\n")
    for repo in ("img/a", "img/b", "reg/a", "reg/b", "glob/a", "zero/a", "def/a", "rot/a", "hang/a",
                 "garbage/a", "fail/a"):
        push_image(reg_prov, repo, f"provider image {repo}\n".encode())
    E["img_open"] = push_image(reg_open, "pg/open", b"anonymous pull of an unlisted registry\n")
    push_image(reg_unlisted, "pg/secret", b"must stay unreachable\n")

    # A throwaway GnuPG key and pass store; credentials stored through the helper itself.
    home = E["pass_home"] = h.make_tempdir("pgit-passhome-")
    os.chmod(home, 0o700)
    env = pass_env()
    h.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "pullgate-test@example.invalid",
           "default", "default", "never"], env=env)
    h.register_cleanup("gpg-agent", lambda: subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env,
                                                           check=False, capture_output=True))
    fpr = [ln.split(":")[9] for ln in h.run(["gpg", "--list-keys", "--with-colons"], env=env).stdout.splitlines()
           if ln.startswith("fpr:")][0]
    h.run(["pass", "init", fpr], env=env)
    pass_store(reg_pass.host, s["pass_user"], s["pass_pw"])

    # Provider plugins: one script, several names; each its own state dir and repository pattern.
    bin_dir = E["bin_dir"] = h.make_tempdir("pgit-plugins-")
    providers = []
    for name, mode, image in (("p-image", "image", f"{reg_prov.host}/img"),
                              ("p-registry", "registry", f"{reg_prov.host}/reg"),
                              ("p-global", "global", f"{reg_prov.host}/glob"),
                              ("p-zero", "zero", f"{reg_prov.host}/zero"),
                              ("p-default", "default", f"{reg_prov.host}/def"),
                              ("p-rotate", "registry", f"{reg_prov.host}/rot"),
                              ("p-hang", "hang", f"{reg_prov.host}/hang"),
                              ("p-garbage", "garbage", f"{reg_prov.host}/garbage"),
                              ("p-fail", "fail", f"{reg_prov.host}/fail"),
                              # a wildcard that also covers the unlisted registry
                              ("p-wide", "registry", f"127.0.0.*:{reg_unlisted.port}"),
                              ("p-open", "registry", f"127.0.0.*:{reg_open.port}")):
        write_plugin(bin_dir, name)
        state = E["plugin_state"][name] = h.make_tempdir(f"pgit-state-{name}-")
        with open(os.path.join(state, "password"), "w") as f:
            f.write(s["prov_pw"] + "\n")
        providers.append({"name": name, "matchImages": [image], "defaultCacheDuration": "10m",
                          "apiVersion": "credentialprovider.kubelet.k8s.io/v1", "args": [mode],
                          "env": [{"name": "PLUGIN_STATE", "value": state},
                                  {"name": "AUTH_PATTERN", "value": image},
                                  {"name": "AUTH_USER", "value": s["prov_user"]}]})
    # The kubelet's own file format, as JSON (EKS ships it so).
    E["provider_config"] = os.path.join(bin_dir, "..", os.path.basename(bin_dir) + "-config.json")
    with open(E["provider_config"], "w") as f:
        json.dump({"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig",
                   "providers": providers}, f, indent=2)
    E["provider_settings"] = {"credentialProviders": {"config": os.path.abspath(E["provider_config"]),
                                                      "binDir": bin_dir}}

    E["pg_pass"] = make_pullgate("pass", docker_config={"credHelpers": {reg_pass.host: "pass"}},
                                 env={"HOME": home})
    E["pg_prov"] = make_pullgate("prov", allow_list=[reg_prov.host, reg_open.host],
                                 extra=E["provider_settings"])
    E["ctrd"] = h.Containerd(hosts_dir=E["pg_pass"].hosts_dir, trust_ca_file=ca.ca_cert)
    print(f"setup {time.monotonic() - t0:.1f}s: registry-pass {reg_pass.host}, registry-prov "
          f"{reg_prov.host}, registry-unlisted {reg_unlisted.host}, registry-open {reg_open.host}")


class CredentialTest(unittest.TestCase):
    def pull(self, pg: h.Pullgate, ref: str, img: h.ImageInfo) -> None:
        cp = E["ctrd"].pull(ref, hosts_dir=pg.hosts_dir)
        self.assertEqual(cp.returncode, 0, f"{cp.stdout[-800:]}\n{cp.stderr[-1500:]}\n{pg.stderr_text(3000)}")
        self.assertEqual(E["ctrd"].image_digest(ref), img.manifest_digest)

    def assert_ok(self, r: h.HttpResponse, pg: h.Pullgate) -> None:
        self.assertEqual(r.status, 200, r.body[:300].decode(errors="replace") + pg.stderr_text(2000))


class A_DockerCredentialPass(CredentialTest):
    def test_a1_pull_with_the_real_pass_helper(self):
        reg, pg = E["reg_pass"], E["pg_pass"]
        self.assertEqual(pg.config["containerRegistry"]["privateBaseImageAllowList"], [])
        self.pull(pg, f"{reg.host}/pg/pass:v1", E["img_pass"])
        d = last_line(pg, reg, "pg/pass")
        # the credHelpers key is stored credentials: the seed rule allows it
        self.assertEqual((d["decision"], d["reason"], d["rule"], d["credential"]),
                         ("allow", "has_credentials", reg.host, "helper:pass"), d)
        # one helper run for the whole pull (HEAD, GET manifest, blobs): the answer is cached
        self.assertEqual(runs(pg, "helper:pass", "found"), 1)

    def test_a2_rotation_while_the_old_answer_is_cached(self):
        reg, pg = E["reg_pass"], E["pg_pass"]
        self.assertEqual(manifest(pg, reg, "pg/pass").status, 200)
        before = runs(pg, "helper:pass")
        new_pw = secret("passpw2-")
        set_htpasswd(reg, E["s"]["pass_user"], new_pw)
        pass_store(reg.host, E["s"]["pass_user"], new_pw)
        # the cached answer holds the old password: the upstream rejects it once,
        # pullgate drops it, asks the helper again and the pull succeeds
        self.pull(pg, f"{reg.host}/pg/rotated:v1", E["img_pass2"])
        self.assertEqual(runs(pg, "helper:pass") - before, 1)
        d = last_line(pg, reg, "pg/rotated")
        self.assertEqual((d["decision"], d["credential"], d["status"]), ("allow", "helper:pass", 200), d)

    def test_a3_check_config_and_explain_name_the_helper(self):
        pg, reg = E["pg_pass"], E["reg_pass"]
        cp = h.run([PULLGATE_BINARY, "check-config", "--config", pg.config_path], check=False,
                   env=h.clean_env(HOME=E["pass_home"]))
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertIn("docker-credential-pass: /usr/bin/docker-credential-pass", cp.stdout)
        cp = h.run([PULLGATE_BINARY, "explain", "--config", pg.config_path, f"{reg.host}/pg/pass:v1"], check=False)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertRegex(cp.stdout, r"credential: +helper:pass \(docker-credential-pass get, server "
                         + reg.host.replace(".", r"\.") + ";")


class B_Providers(CredentialTest):
    def fetch(self, pg, repo, reg=None):
        r = manifest(pg, reg or E["reg_prov"], repo)
        self.assert_ok(r, pg)

    def test_b1_cache_per_key_type(self):
        pg, reg = E["pg_prov"], E["reg_prov"]
        # Image: one run per image
        for repo in ("img/a", "img/a", "img/b", "img/b"):
            self.fetch(pg, repo)
        self.assertEqual([c["image"] for c in plugin_calls("p-image")], [f"{reg.host}/img/a", f"{reg.host}/img/b"])
        # Registry: one run for every image of the registry
        for repo in ("reg/a", "reg/b", "reg/a"):
            self.fetch(pg, repo)
        self.assertEqual(len(plugin_calls("p-registry")), 1)
        # Global: one run, whatever comes later
        for _ in range(3):
            self.fetch(pg, "glob/a")
        self.assertEqual(len(plugin_calls("p-global")), 1)
        # 0s: never cached
        for _ in range(3):
            self.fetch(pg, "zero/a")
        self.assertEqual(len(plugin_calls("p-zero")), 3)
        # no cacheDuration: defaultCacheDuration (10m) applies
        for _ in range(3):
            self.fetch(pg, "def/a")
        self.assertEqual(len(plugin_calls("p-default")), 1)
        call = plugin_calls("p-image")[0]
        self.assertEqual((call["apiVersion"], call["kind"]),
                         ("credentialprovider.kubelet.k8s.io/v1", "CredentialProviderRequest"))
        # the minimal environment: PATH, HOME and the provider's env, nothing of pullgate's
        self.assertEqual(set(call["env"]) - {"PWD", "LC_CTYPE", "SHLVL", "_"},
                         {"PATH", "HOME", "PLUGIN_STATE", "AUTH_PATTERN", "AUTH_USER"})
        d = last_line(pg, reg, "img/a")
        self.assertEqual((d["decision"], d["reason"], d["credential"]), ("allow", "allowlisted", "provider:p-image"))

    def test_b2_rotation(self):
        pg, reg = E["pg_prov"], E["reg_prov"]
        self.fetch(pg, "rot/a")
        self.assertEqual(len(plugin_calls("p-rotate")), 1)
        new_pw = secret("provpw2-")
        for state in E["plugin_state"].values():
            with open(os.path.join(state, "password"), "w") as f:
                f.write(new_pw + "\n")
        set_htpasswd(reg, E["s"]["prov_user"], new_pw)
        self.fetch(pg, "rot/a")   # cached old password: rejected, dropped, asked again
        self.assertEqual(len(plugin_calls("p-rotate")), 2)
        self.fetch(pg, "rot/a")   # the fresh answer is cached
        self.assertEqual(len(plugin_calls("p-rotate")), 2)

    def test_b3_garbage_and_failure_fail_closed(self):
        pg = E["pg_prov"]
        for repo, plugin, words in (("garbage/a", "p-garbage", "printed no JSON response"),
                                    ("fail/a", "p-fail", "exited with status 3")):
            r = manifest(pg, E["reg_prov"], repo)
            self.assertEqual(r.status, 502, r.body[:300])
            err = r.json()["errors"][0]
            self.assertEqual(err["code"], "UNAVAILABLE", err)
            self.assertIn(f"credential provider plugin {plugin}", err["message"])
            self.assertIn(words, err["message"])
            d = last_line(pg, E["reg_prov"], repo)
            self.assertEqual((d["decision"], d["reason"], d["status"], d["credential"]),
                             ("error", "credential_source_failed", 502, f"provider:{plugin}"), d)
        # p-fail printed the password on stderr: logged scrubbed
        self.assertIn("its stderr: cannot reach the metadata service; last password was ***", pg.stderr_all())

    def test_b4_hanging_plugin_is_killed_and_blocks_nobody(self):
        pg = E["pg_prov"]
        result = {}

        def hang():
            t0 = time.monotonic()
            result["r"] = manifest(pg, E["reg_prov"], "hang/a", timeout=120)
            result["took"] = time.monotonic() - t0
        import threading
        t = threading.Thread(target=hang)
        t.start()
        h.wait_for(lambda: plugin_calls("p-hang"), 10, what="the hanging plugin to start")
        pid = plugin_calls("p-hang")[0]["pid"]
        # meanwhile other pulls go on
        t0 = time.monotonic()
        self.fetch(pg, "reg/a")
        self.assertLess(time.monotonic() - t0, 5)
        t.join(90)
        r = result["r"]
        self.assertEqual(r.status, 502, r.body[:300])
        self.assertIn("killed after 60 s", r.json()["errors"][0]["message"])
        self.assertGreaterEqual(result["took"], 59)
        self.assertFalse(os.path.exists(f"/proc/{pid}"), "the plugin still runs")

    def test_b5_provider_pattern_never_extends_the_allowlist(self):
        pg, reg = E["pg_prov"], E["reg_unlisted"]
        before, requests_before = reg.counter.count(), reg.request_count("pg/secret")
        r = manifest(pg, reg, "pg/secret")
        self.assertEqual(r.status, 403, r.body[:300])
        self.assertEqual(r.json()["errors"][0]["code"], "DENIED")
        d = last_line(pg, reg, "pg/secret")
        self.assertEqual((d["decision"], d["reason"]), ("deny", "not_allowlisted"), d)
        self.assertEqual(plugin_calls("p-wide"), [], "the plugin was asked for a denied registry")
        time.sleep(0.3)
        self.assertEqual(reg.counter.count(), before, "the unlisted registry saw a connection")
        self.assertEqual(reg.request_count("pg/secret"), requests_before)
        cp = h.run([PULLGATE_BINARY, "explain", "--config", pg.config_path, f"{reg.host}/pg/secret:v1"],
                   check=False)
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("credential: provider:p-wide (not used: the pull is denied)", cp.stdout)


class C_AnonymousAndFailures(CredentialTest):
    def test_c1_unlisted_registries_anonymous(self):
        reg = E["reg_open"]
        pg = make_pullgate("anon", allow_list=[], extra={"unlistedRegistries": "anonymous",
                                                         **E["provider_settings"]})
        before = len(plugin_calls("p-open"))
        self.pull(pg, f"{reg.host}/pg/open:v1", E["img_open"])
        d = last_line(pg, reg, "pg/open")
        self.assertEqual((d["decision"], d["reason"], d["credential"]), ("allow", "anonymous_unlisted", "anonymous"))
        # no credentials from any source: the matching provider was never asked
        self.assertEqual(len(plugin_calls("p-open")), before)
        # deny stays the default: the same pull through a pullgate without the key
        r = manifest(make_pullgate("deny", extra=E["provider_settings"]), reg, "pg/open")
        self.assertEqual(r.status, 403)

    def test_c2_failing_helpers_fail_closed_without_secrets(self):
        reg = E["reg_pass"]
        bin_dir = h.make_tempdir("pgit-helpers-")
        write_plugin(bin_dir, "docker-credential-leaky", LEAKY_HELPER % E["s"]["leak"])
        pg = make_pullgate("fail", docker_config={
            "auths": {"leak.example": {"username": "u", "password": E["s"]["leak"]}},
            "credHelpers": {reg.host: "leaky", E["reg_prov"].host: "missing"}},
            extra={"credentialHelpers": {"path": bin_dir, "timeoutSeconds": 2}})
        r = manifest(pg, reg, "pg/pass")
        self.assertEqual(r.status, 502, r.body[:300])
        err = r.json()["errors"][0]
        self.assertEqual(err["code"], "UNAVAILABLE")
        self.assertIn("docker-credential-leaky", err["message"])
        self.assertIn("exited with status 4", err["message"])
        d = last_line(pg, reg, "pg/pass")
        self.assertEqual((d["reason"], d["credential"]), ("credential_source_failed", "helper:leaky"), d)
        self.assertIn("token *** rejected", pg.stderr_all())
        r = manifest(pg, E["reg_prov"], "img/a")
        self.assertEqual(r.status, 502)
        self.assertIn("docker-credential-missing was not found", r.json()["errors"][0]["message"])
        cp = h.run([PULLGATE_BINARY, "check-config", "--config", pg.config_path], check=False)
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("docker-credential-missing not found", cp.stderr)


class Z_FiguresAndSecrets(CredentialTest):
    def test_y1_figures(self):
        """Runs per 100 pulls with caching, cached/uncached latency, RSS around 1000 helper runs."""
        reg = E["reg_pass"]
        # per 100 pulls (a manifest HEAD each, as containerd starts a pull), from a cold cache
        pg = make_pullgate("count-helper", docker_config={"credHelpers": {reg.host: "pass"}},
                           env={"HOME": E["pass_home"]})
        for _ in range(100):
            self.assertEqual(manifest(pg, reg, "pg/pass", method="HEAD").status, 200)
        helper_runs = runs(pg, "helper:pass")
        pg = make_pullgate("count-prov", allow_list=[E["reg_prov"].host], extra=E["provider_settings"])
        before_p = len(plugin_calls("p-registry"))
        for _ in range(100):
            self.assertEqual(manifest(pg, E["reg_prov"], "reg/a", method="HEAD").status, 200)
        plugin_runs = len(plugin_calls("p-registry")) - before_p
        self.assertEqual(helper_runs, 1)
        self.assertEqual(plugin_runs, 1)
        print(f"\nfigure: runs per 100 pulls with caching: docker-credential-pass {helper_runs}, "
              f"provider plugin {plugin_runs}")

        # cached vs uncached latency: a fast helper, cacheSeconds 300 vs 0
        bin_dir = h.make_tempdir("pgit-fast-")
        pw_file = os.path.join(bin_dir, "pw")
        with open(pw_file, "w") as f:
            f.write(reg.credentials[1])
        write_plugin(bin_dir, "docker-credential-fast", FAST_HELPER % (reg.credentials[0], pw_file))

        def timed(pg, n):
            for _ in range(5):  # connections, TLS sessions and tokens warm
                manifest(pg, reg, "pg/pass", method="HEAD")
            samples = []
            for _ in range(n):
                t0 = time.monotonic()
                self.assertEqual(manifest(pg, reg, "pg/pass", method="HEAD").status, 200)
                samples.append(time.monotonic() - t0)
            samples.sort()
            return samples[len(samples) // 2] * 1000
        path = f"{bin_dir}:/usr/bin:/bin"
        cached = make_pullgate("cached", docker_config={"credHelpers": {reg.host: "fast"}},
                               extra={"credentialHelpers": {"path": path}})
        uncached = make_pullgate("uncached", docker_config={"credHelpers": {reg.host: "fast"}},
                                 extra={"credentialHelpers": {"path": path, "cacheSeconds": 0}})
        static = make_pullgate("static", docker_config={"auths": {reg.host: {
            "username": reg.credentials[0], "password": reg.credentials[1]}}})
        t_static, t_cached, t_uncached = timed(static, 50), timed(cached, 50), timed(uncached, 50)
        print(f"figure: median manifest HEAD: static auths {t_static:.2f} ms, cached helper answer "
              f"{t_cached:.2f} ms (+{t_cached - t_static:.2f}), uncached (a helper run per request) "
              f"{t_uncached:.2f} ms (+{t_uncached - t_static:.2f})")
        self.assertLess(t_cached, t_uncached)

        # RSS before and after 1000 helper runs
        rss0 = uncached.rss_kib()
        before = runs(uncached, "helper:fast")
        for _ in range(1000):
            self.assertEqual(manifest(uncached, reg, "pg/pass", method="HEAD").status, 200)
        n = runs(uncached, "helper:fast") - before
        rss1 = uncached.rss_kib()
        print(f"figure: RSS before/after {n} helper runs: {rss0} KiB / {rss1} KiB")
        self.assertEqual(n, 1000)
        if not h.SANITIZED:  # in an ASan build RSS is not pullgate's own
            self.assertLess(rss1 - rss0, 4096, "RSS grew by more than 4 MiB over 1000 helper runs")
        self.assertEqual(children_of(uncached.pid), [], "a helper process was left behind")

    def test_z_no_secret_in_logs_errors_or_metrics(self):
        texts = []
        for pg in E["pullgates"]:
            texts.append((f"pullgate[{pg.label}] stderr", pg.stderr_all()))
            with open(pg.decision_log_path, errors="replace") as f:
                texts.append((f"pullgate[{pg.label}] decision log", f.read()))
            if pg.alive():
                texts.append((f"pullgate[{pg.label}] metrics", metrics(pg)))
        for where, text in texts:
            for s in SECRETS:
                self.assertNotIn(s, text, f"a secret in {where}")
        self.assertGreater(len(SECRETS), 4)


def main() -> int:
    return h.suite_main(sys.modules[__name__], "pullgate-creds")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        h.run_cleanups()
