#!/usr/bin/python3
"""The shipped artifacts, tested with the real things.

One `scripts/package.sh` run builds dist/pullgate_<version>_<arch>.deb and
dist/pullgate-<version>.oci.tar (or --deb/--oci name prebuilt ones). Then:

  A  the .deb itself: one version everywhere, lintian, contents, conffiles
  B  a clean Debian 12 root (mmdebstrap, cached under /var/cache/pullgate-test)
     in a chroot where no service may start: install, --version, check-config,
     systemd-analyze verify + exposure, an edited conffile survives a
     reinstall, purge leaves nothing
  C  the same root booted under real systemd (systemd-nspawn --boot): install
     starts the unit (Type=notify), /healthz and /v2/, a denial in the
     decision log, LoadCredential= into the DynamicUser service, reload with
     the same MainPID, the watchdog fed, runtime exposure, stop with status 0,
     purge
  D  the OCI image in containerd (`ctr images import`, `skopeo copy`), run
     with `ctr run --net-host` in this test's network namespace with the
     ConfigMap's config: /healthz, /v2/, a pull through it, its RSS; the
     DaemonSet's init container command and mount write hosts.toml
  E  deploy/kubernetes/: the manifests parse and hold what the README says

mmdebstrap (only when the cached root is missing) is the one step that uses
the network, before the tests enter their private network namespace.

Run: /usr/bin/python3 integration/test_package.py [--deb X.deb --oci X.oci.tar] [-k PATTERN] [--keep]
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import package_support as ps  # noqa: E402

import yaml  # noqa: E402  (Debian python3-yaml)

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
A: dict = {}   # artifacts: deb, oci, version, root tarball, extracted .deb

# lintian tags left on purpose, each with the reason (checked: no other tag
# may appear, and no error at all).
LINTIAN_ACCEPTED = {
    # /etc/pullgate/config.json holds registry credentials: readable by root
    # only; systemd hands it to the DynamicUser service (LoadCredential=).
    "non-standard-file-perm": "etc/pullgate/config.json is 0600 (registry credentials)",
}


def read_project_version() -> str:
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        m = re.search(r"^project\(pullgate VERSION ([0-9.]+)", f.read(), re.M)
    return m.group(1)


def http(booted, url: str, *extra: str) -> tuple[int, str, str]:
    """curl in the container's network namespace: (status, headers, body)."""
    cp = booted.netns_run("curl", "-sS", "-D", "/dev/stderr", "-o", "/dev/stdout", "-w", "\n%{http_code}",
                          *extra, url, check=False)
    body, _, code = cp.stdout.rpartition("\n")
    return int(code or 0), cp.stderr, body


def exposure(text: str) -> float:
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", text)
    if not m:
        raise AssertionError(f"no exposure level in:\n{text[-2000:]}")
    return float(m.group(1))


def decisions(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------
# A: the .deb
# --------------------------------------------------------------------------

class A_Deb(unittest.TestCase):

    def test_a1_one_version(self):
        project = read_project_version()
        changelog = h.run(["dpkg-parsechangelog", "-l", os.path.join(SOURCE, "debian/changelog"),
                           "-S", "Version"]).stdout.strip()
        deb = ps.deb_field(A["deb"], "Version")
        binary = h.run([os.path.join(A["debroot"], "usr/bin/pullgate"), "--version"]).stdout.strip()
        self.assertEqual(changelog, project, "debian/changelog and project(VERSION) disagree")
        self.assertEqual(deb, project)
        self.assertEqual(binary, f"pullgate {project}")
        self.assertTrue(os.path.basename(A["deb"]).startswith(f"pullgate_{project}_"))
        self.assertEqual(os.path.basename(A["oci"]), f"pullgate-{project}.oci.tar")

    def test_a2_lintian(self):
        cp = h.run(["lintian", "--tag-display-limit", "0", A["deb"]], check=False, timeout=600)
        out = (cp.stdout + cp.stderr).strip()
        print(f"\n  lintian: {out or '(nothing)'}", end=" ")
        tags = re.findall(r"^([EWIPX]): pullgate[^:]*: (\S+)", out, re.M)
        self.assertEqual([t for t in tags if t[0] == "E"], [], out)
        unexplained = [t for s, t in tags if s == "W" and t not in LINTIAN_ACCEPTED]
        self.assertEqual(unexplained, [], out)

    def test_a3_contents_and_conffiles(self):
        listing = h.run(["dpkg-deb", "-c", A["deb"]]).stdout
        paths = {line.split()[-1] if " -> " not in line else line.split()[-3] for line in listing.splitlines()}
        for p in ("./usr/bin/pullgate", "./lib/systemd/system/pullgate.service", "./etc/pullgate/config.yaml",
                  "./etc/pullgate/config.json", "./etc/logrotate.d/pullgate", "./usr/share/doc/pullgate/README.md",
                  "./usr/share/doc/pullgate/examples/config.yaml",
                  "./usr/share/doc/pullgate/examples/containerd-hosts.toml",
                  "./usr/share/doc/pullgate/examples/credentials.example.json"):
            self.assertIn(p, paths)
        self.assertFalse([p for p in paths if p.startswith("./usr/share/pullgate")], "examples outside doc/")
        ctrl = h.make_tempdir("pgit-debctrl-")
        h.run(["dpkg-deb", "-e", A["deb"], ctrl])
        with open(os.path.join(ctrl, "conffiles")) as f:
            conffiles = f.read().split()
        self.assertIn("/etc/pullgate/config.yaml", conffiles)
        self.assertIn("/etc/pullgate/config.json", conffiles)
        self.assertIn("/etc/logrotate.d/pullgate", conffiles)
        with open(os.path.join(ctrl, "postinst")) as f:
            postinst = f.read()
        self.assertIn("deb-systemd-helper", postinst)    # enable
        self.assertIn("deb-systemd-invoke", postinst)    # start
        depends = ps.deb_field(A["deb"], "Depends")
        for lib in ("libc6", "libssl3", "libsystemd0", "libyaml-cpp0.7"):
            self.assertIn(lib, depends)
        unit = open(os.path.join(A["debroot"], "lib/systemd/system/pullgate.service")).read()
        self.assertRegex(unit, r"(?m)^ExecStart=/usr/bin/pullgate serve ")
        self.assertEqual(os.stat(os.path.join(A["debroot"], "etc/pullgate/config.json")).st_mode & 0o777, 0o600)
        print(f"\n  .deb {os.path.getsize(A['deb'])} bytes, installed {ps.deb_field(A['deb'], 'Installed-Size')} KiB",
              end=" ")


# --------------------------------------------------------------------------
# B: a clean Debian 12 root, services kept from starting
# --------------------------------------------------------------------------

class B_Chroot(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.root = ps.root_copy(A["base_root"], "pgit-chroot-")
        cls.ch = ps.Chroot(cls.root)
        cls.before = ps.tree_listing(cls.root)
        ps.copy_into(cls.root, A["deb"], "/tmp/pullgate.deb")
        cls.install = cls.ch.run("apt-get", "install", "-y", "/tmp/pullgate.deb", timeout=300)

    def test_b1_version_and_shipped_config(self):
        out = self.ch.run("pullgate", "--version").stdout.strip()
        self.assertEqual(out, f"pullgate {A['version']}")
        cp = self.ch.run("pullgate", "check-config", "--config", "/etc/pullgate/config.yaml", check=False)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertIn("nothing is allowed", cp.stdout)

    def test_b2_unit_verify_and_exposure(self):
        cp = self.ch.run("systemd-analyze", "verify", "/lib/systemd/system/pullgate.service", check=False)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertNotIn("pullgate.service:", cp.stderr, cp.stderr)
        cp = self.ch.run("systemd-analyze", "security", "--offline=yes", "/lib/systemd/system/pullgate.service",
                         check=False)
        level = exposure(cp.stdout)
        print(f"\n  installed unit exposure {level}", end=" ")
        self.assertLessEqual(level, 2.0)

    def test_b3_enabled_not_started(self):
        self.assertTrue(os.path.islink(self.ch.path("/etc/systemd/system/multi-user.target.wants/pullgate.service")))
        running = [p for p in os.listdir("/proc") if p.isdigit() and self._root_of(p) == self.root]
        self.assertEqual(running, [], "a process runs in the chroot although policy-rc.d forbids starts")

    def _root_of(self, pid: str) -> str:
        try:
            return os.readlink(f"/proc/{pid}/root")
        except OSError:
            return ""

    def test_b4_edited_conffile_survives_reinstall(self):
        path = self.ch.path("/etc/pullgate/config.yaml")
        with open(path) as f:
            edited = f.read().replace("privateBaseImageAllowList: []",
                                      "privateBaseImageAllowList: [registry.admin.example]")
        self.assertIn("registry.admin.example", edited)
        with open(path, "w") as f:
            f.write(edited)
        cp = self.ch.run("apt-get", "install", "-y", "--reinstall", "/tmp/pullgate.deb",
                         check=False)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), edited)
        self.assertFalse(os.path.exists(path + ".dpkg-new"))
        out = self.ch.run("pullgate", "check-config", "--config", "/etc/pullgate/config.yaml").stdout
        self.assertIn("registry.admin.example", out)

    def test_b5_purge_leaves_nothing(self):
        # What the running service and the admin would have added.
        os.makedirs(self.ch.path("/var/log/private/pullgate"), mode=0o750, exist_ok=True)
        with open(self.ch.path("/var/log/private/pullgate/decisions.log"), "w") as f:
            f.write('{"decision":"deny"}\n')
        if not os.path.lexists(self.ch.path("/var/log/pullgate")):
            os.symlink("private/pullgate", self.ch.path("/var/log/pullgate"))
        with open(self.ch.path("/etc/pullgate/ca.crt"), "w") as f:
            f.write("admin's CA\n")
        self.ch.run("apt-get", "purge", "-y", "pullgate")
        after = ps.tree_listing(self.root)
        left = sorted(p for p in after - self.before
                      if not re.match(r"(var/lib/dpkg/|var/cache/(apt|debconf|ldconfig)/|var/log/(apt|dpkg)|"
                                      r"var/lib/apt/|etc/ld\.so\.cache|usr/sbin/policy-rc\.d)", p))
        self.assertEqual(left, [], "purge left these behind")
        self.assertEqual([p for p in after if "pullgate" in p], [])


# --------------------------------------------------------------------------
# C: under real systemd
# --------------------------------------------------------------------------

class C_Systemd(unittest.TestCase):
    SECRET = "nspawn-secret-7f3a"

    @classmethod
    def setUpClass(cls):
        cls.root = ps.root_copy(A["base_root"], "pgit-nspawn-")
        ps.copy_into(cls.root, A["deb"], "/root/pullgate.deb")
        cls.sd = ps.Booted(cls.root)
        t0 = time.monotonic()
        cls.install = cls.sd.run("apt-get", "install", "-y", "/root/pullgate.deb", timeout=300)
        print(f"\n  booted, installed in {time.monotonic() - t0:.1f}s", end=" ")
        cls.log = cls.sd.path("/var/log/private/pullgate/decisions.log")

    def journal(self) -> str:
        return self.sd.run("journalctl", "-u", "pullgate", "--no-pager", "-o", "cat", check=False).stdout

    def active(self) -> bool:
        return self.sd.run("systemctl", "is-active", "pullgate", check=False).stdout.strip() == "active"

    def test_c1_install_enables_and_starts_it(self):
        # No systemctl start here: the package's postinst did it, and
        # "active" for Type=notify means pullgate sent READY=1.
        h.wait_for(self.active, 30, interval=0.3, what="pullgate.service active")
        p = self.sd.show("pullgate", "Type", "ActiveState", "SubState", "UnitFileState", "NRestarts")
        self.assertEqual(p["Type"], "notify")
        self.assertEqual((p["ActiveState"], p["SubState"]), ("active", "running"))
        self.assertEqual(p["UnitFileState"], "enabled")
        self.assertEqual(p["NRestarts"], "0")

    def test_c2_healthz_and_v2(self):
        h.wait_for(self.active, 30, interval=0.3, what="pullgate.service active")
        for path in ("/healthz", "/readyz"):
            status, _, _ = http(self.sd, f"http://127.0.0.1:5001{path}")
            self.assertEqual(status, 200, path)
        status, headers, body = http(self.sd, "http://127.0.0.1:5000/v2/")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {})
        self.assertIn("docker-distribution-api-version: registry/2.0", headers.lower())

    def test_c3_denial_in_the_decision_log(self):
        status, _, body = http(self.sd, "http://127.0.0.1:5000/v2/library/busybox/manifests/latest?ns=docker.io")
        self.assertEqual(status, 403)
        self.assertEqual(json.loads(body)["errors"][0]["code"], "DENIED")
        lines = h.wait_for(lambda: [d for d in decisions(self.log) if d.get("repository") == "library/busybox"],
                           10, what="the denial in the decision log")
        self.assertEqual((lines[-1]["decision"], lines[-1]["reason"]), ("deny", "not_allowlisted"))
        # LogsDirectory= with DynamicUser=: /var/log/pullgate -> private/pullgate, owned by the dynamic user.
        self.assertEqual(os.readlink(self.sd.path("/var/log/pullgate")), "private/pullgate")
        self.assertNotEqual(os.stat(self.log).st_uid, 0)

    def test_c4_load_credential_to_the_dynamic_user(self):
        creds = {"auths": {"creds.example.test": {
            "auth": base64.b64encode(f"robot:{self.SECRET}".encode()).decode()}}}
        path = self.sd.path("/etc/pullgate/config.json")
        with open(path, "w") as f:
            json.dump(creds, f)
        os.chmod(path, 0o600)  # root only: the service can read it only through LoadCredential=
        self.sd.run("systemctl", "restart", "pullgate")
        url = "http://127.0.0.1:5000/v2/team/app/manifests/v1?ns=creds.example.test"
        status, _, _ = http(self.sd, url)
        line = h.wait_for(lambda: [d for d in decisions(self.log) if d.get("registry") == "creds.example.test"],
                          10, what="the decision for creds.example.test")[-1]
        # Allowed by its credentials (the seed rule) and sent with them; the
        # registry itself is unreachable in the container's network namespace.
        self.assertEqual((line["rule"], line["credential"]), ("creds.example.test", "auths:creds.example.test"), line)
        self.assertNotEqual(line["decision"], "deny", line)
        self.assertNotEqual(status, 403)
        user = self.sd.show("pullgate", "User", "DynamicUser", "LoadCredential")
        self.assertEqual(user["DynamicUser"], "yes")
        with open(self.log) as f:
            self.assertNotIn(self.SECRET, f.read())
        self.assertNotIn(self.SECRET, self.journal())

    def test_c5_reload_keeps_the_main_pid(self):
        h.wait_for(self.active, 30, interval=0.3, what="pullgate.service active")
        pid = self.sd.show("pullgate", "MainPID")["MainPID"]
        path = self.sd.path("/etc/pullgate/config.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("privateBaseImageAllowList: []", "privateBaseImageAllowList: [reload.example.test]"))
        self.sd.run("systemctl", "reload", "pullgate")
        self.assertEqual(self.sd.show("pullgate", "MainPID")["MainPID"], pid)
        self.assertTrue(self.active())
        http(self.sd, "http://127.0.0.1:5000/v2/team/app/manifests/v1?ns=reload.example.test")
        line = h.wait_for(lambda: [d for d in decisions(self.log) if d.get("registry") == "reload.example.test"],
                          10, what="the decision for reload.example.test")[-1]
        self.assertEqual((line["rule"], line["credential"]), ("reload.example.test", "anonymous"), line)
        self.assertNotEqual(line["decision"], "deny", line)

    def test_c6_watchdog_is_fed(self):
        p = self.sd.show("pullgate", "WatchdogUSec", "WatchdogTimestampMonotonic")
        self.assertNotIn(p["WatchdogUSec"], ("0", "infinity"))
        first = int(p["WatchdogTimestampMonotonic"])
        self.assertGreater(first, 0, "systemd never received WATCHDOG=1")
        # pullgate pings at half of WatchdogSec (30 s): expect a newer ping within 16 s.
        h.wait_for(lambda: int(self.sd.show("pullgate", "WatchdogTimestampMonotonic")
                               ["WatchdogTimestampMonotonic"]) > first, 20, interval=0.5, what="a newer WATCHDOG=1")
        self.assertEqual(self.sd.show("pullgate", "NRestarts")["NRestarts"], "0")

    def test_c7_runtime_exposure(self):
        cp = self.sd.run("systemd-analyze", "security", "pullgate", check=False)
        level = exposure(cp.stdout)
        print(f"\n  runtime exposure {level}", end=" ")
        self.assertLessEqual(level, 2.0)

    def test_c8_stop_exits_zero(self):
        self.sd.run("systemctl", "stop", "pullgate", timeout=60)
        p = self.sd.show("pullgate", "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
        self.assertEqual(p["ActiveState"], "inactive")
        self.assertEqual(p["Result"], "success", p)
        self.assertEqual((p["ExecMainCode"], p["ExecMainStatus"]), ("1", "0"), p)  # CLD_EXITED, status 0

    def test_c9_purge_on_a_running_system(self):
        self.sd.run("apt-get", "purge", "-y", "pullgate", timeout=300)
        for p in ("/etc/pullgate", "/var/log/pullgate", "/var/log/private/pullgate", "/usr/bin/pullgate",
                  "/lib/systemd/system/pullgate.service",
                  "/etc/systemd/system/multi-user.target.wants/pullgate.service"):
            self.assertFalse(os.path.lexists(self.sd.path(p)), p)


# --------------------------------------------------------------------------
# D: the OCI image in containerd
# --------------------------------------------------------------------------

class D_Image(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.ca = h.TestCA()
        cls.reg = h.Registry(cls.ca, name="registry-img")
        cls.layouts = h.make_tempdir("pgit-layouts-")
        cls.image = h.build_oci_layout(os.path.join(cls.layouts, "app"), [b"through the image\n"], "v1")
        h.push_layout(cls.image.layout_dir, cls.reg, "pg/app", "v1")
        cls.hosts = h.make_tempdir("pgit-hosts-")
        cls.ctrd = h.Containerd(hosts_dir=cls.hosts, trust_ca_file=cls.ca.ca_cert)
        cls.ref = f"pullgate:{A['version']}"
        cls.ctrd.ctr("images", "import", A["oci"])
        cls.tasks: list[str] = []

    @classmethod
    def tearDownClass(cls):
        for name in cls.tasks:
            cls.ctrd.ctr("tasks", "kill", "-s", "SIGKILL", name, check=False)
            cls.ctrd.ctr("tasks", "rm", "-f", name, check=False)
            cls.ctrd.ctr("containers", "rm", name, check=False)

    def test_d1_import_and_skopeo(self):
        self.assertIn(self.ref, self.ctrd.images())
        out = h.make_tempdir("pgit-skopeo-")
        h.run(["skopeo", "copy", f"oci-archive:{A['oci']}", f"oci:{out}/layout:copy"], timeout=120)
        cfg = json.loads(h.run(["skopeo", "inspect", "--config", f"oci-archive:{A['oci']}"]).stdout)["config"]
        self.assertEqual(cfg["Entrypoint"], ["/usr/bin/pullgate", "serve"])
        self.assertEqual(cfg["Cmd"], ["--config", "/etc/pullgate/config.yaml"])
        self.assertEqual(cfg["User"], "65532:65532")
        print(f"\n  image archive {os.path.getsize(A['oci'])} bytes", end=" ")

    def test_d2_layer_is_the_binary_and_its_libraries(self):
        with tarfile.open(A["oci"]) as outer:
            index = json.load(outer.extractfile("index.json"))
            manifest = json.load(outer.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
            layer = outer.extractfile("blobs/sha256/" + manifest["layers"][0]["digest"][7:])
            with tarfile.open(fileobj=layer, mode="r:gz") as t:
                members = {m.name: m for m in t.getmembers()}
        files = {n for n, m in members.items() if m.isfile()}
        ldd = h.run(["ldd", os.path.join(A["debroot"], "usr/bin/pullgate")]).stdout
        libs = {os.path.basename(p) for p in re.findall(r"(/\S+) \(0x", ldd)}
        image_libs = {os.path.basename(f) for f in files if "/lib" in f}
        self.assertEqual(image_libs, libs)
        for f in ("usr/bin/pullgate", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group",
                  "etc/pullgate/config.yaml"):
            self.assertIn(f, files)
        self.assertNotIn("usr/bin/sh", files)
        self.assertEqual(len([f for f in files if f.startswith("usr/bin/")]), 1)

    def run_container(self, name: str, mounts: list[tuple[str, str, str]], *args: str,
                      detach: bool = True) -> subprocess.Popen:
        argv = ["ctr", "--address", self.ctrd.address, "-n", self.ctrd.namespace, "run", "--rm", "--net-host",
                "--read-only"]
        for src, dst, opts in mounts:
            argv += ["--mount", f"type=bind,src={src},dst={dst},options=rbind:{opts}"]
        argv += [self.ref, name, *args]
        log = open(os.path.join(h.make_tempdir("pgit-ctr-run-"), "out.log"), "w+")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=h.clean_env())
        proc.log = log
        if detach:
            self.tasks.append(name)
        return proc

    def configmap_config(self) -> dict:
        docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(
            open(os.path.join(SOURCE, "deploy/kubernetes/configmap.yaml")))}
        return yaml.safe_load(docs["pullgate-config"]["data"]["config.yaml"])

    def test_d3_serve_and_pull_through_it(self):
        # The ConfigMap's config, with the test registry on the list and ports of our own.
        cfg = self.configmap_config()
        port, admin = h.free_port(), h.free_port()
        cfg["listen"], cfg["adminListen"] = f"127.0.0.1:{port}", f"127.0.0.1:{admin}"
        cfg["containerRegistry"]["privateBaseImageAllowList"] = [self.reg.host]
        cfg["registries"] = {self.reg.host: {"caFile": "/etc/pullgate/ca.crt"}}
        etc = h.make_tempdir("pgit-etc-pullgate-")
        with open(os.path.join(etc, "config.yaml"), "w") as f:
            yaml.safe_dump(cfg, f)
        shutil.copy(self.ca.ca_cert, os.path.join(etc, "ca.crt"))
        secret = next(yaml.safe_load_all(open(os.path.join(SOURCE, "deploy/kubernetes/secret.yaml"))))
        creds = h.make_tempdir("pgit-creds-")
        with open(os.path.join(creds, "config.json"), "w") as f:
            f.write(secret["stringData"][".dockerconfigjson"])
        for d in (etc, creds):
            os.chmod(d, 0o755)
            for n in os.listdir(d):
                os.chmod(os.path.join(d, n), 0o644)
        proc = self.run_container("pullgate-serve", [(etc, "/etc/pullgate", "ro"),
                                                     (creds, os.path.dirname(cfg["credentialsFile"]), "ro")])

        def up():
            if proc.poll() is not None:
                proc.log.seek(0)
                raise AssertionError(f"ctr run exited {proc.returncode}:\n{proc.log.read()[-3000:]}")
            return h.port_open(admin) and h.port_open(port)
        h.wait_for(up, 60, interval=0.2, what="containerized pullgate")
        self.assertEqual(h.http_request("GET", f"http://127.0.0.1:{admin}/healthz").status, 200)
        r = h.http_request("GET", f"http://127.0.0.1:{port}/v2/")
        self.assertEqual((r.status, r.body), (200, b"{}"))

        pid = int(self.ctrd.ctr("tasks", "ls").stdout.split("pullgate-serve")[1].split()[0])
        status = open(f"/proc/{pid}/status").read()
        self.assertRegex(status, r"(?m)^Uid:\s+65532\s")

        h.write_no_bypass_hosts(self.hosts, f"http://127.0.0.1:{port}")
        cp = self.ctrd.pull(f"{self.reg.host}/pg/app:v1")
        self.assertEqual(cp.returncode, 0, cp.stdout[-1500:] + cp.stderr[-2500:])
        self.assertEqual(self.ctrd.image_digest(f"{self.reg.host}/pg/app:v1"), self.image.manifest_digest)
        denied = self.ctrd.pull("127.0.0.1:1/not/listed:v1")
        self.assertNotEqual(denied.returncode, 0)

        proc.log.seek(0)
        lines = [json.loads(x) for x in proc.log.read().splitlines() if x.startswith("{")]
        self.assertTrue([d for d in lines if d["decision"] == "allow" and d["kind"] == "blob"], lines)
        self.assertTrue([d for d in lines if d["decision"] == "deny" and d["reason"] == "not_allowlisted"], lines)

        hwm_kib = h.read_proc_status(pid, "VmHWM")
        rss_kib = h.read_proc_status(pid, "VmRSS")
        limit = D_Image.daemonset_memory_limit_mib()
        print(f"\n  containerized pullgate RSS {rss_kib / 1024:.1f} MiB, peak {hwm_kib / 1024:.1f} MiB"
              f" (DaemonSet limit {limit} MiB)", end=" ")
        self.assertLess(hwm_kib / 1024, limit)

    @staticmethod
    def daemonset_memory_limit_mib() -> int:
        ds = next(yaml.safe_load_all(open(os.path.join(SOURCE, "deploy/kubernetes/daemonset.yaml"))))
        limit = ds["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        return int(limit.removesuffix("Mi"))

    def test_d4_init_container_writes_no_bypass_hosts(self):
        ds = next(yaml.safe_load_all(open(os.path.join(SOURCE, "deploy/kubernetes/daemonset.yaml"))))
        init = ds["spec"]["template"]["spec"]["initContainers"][0]
        mount = init["volumeMounts"][0]["mountPath"]
        certs = h.make_tempdir("pgit-node-certs-")
        os.makedirs(os.path.join(certs, "docker.io"))   # a shadowing directory, to be warned about
        # In the cluster the init container runs as root; ctr run takes the image's user (65532).
        os.chown(certs, 65532, 65532)
        proc = self.run_container("pullgate-init", [(certs, mount, "rw")], *init["command"], detach=False)
        self.assertEqual(proc.wait(60), 0)
        proc.log.seek(0)
        out = proc.log.read()
        # The warning names the shadowing directory and what it does to pulls.
        self.assertRegex(out, r"warning: \S*/docker\.io: shadows _default for docker\.io and has no hosts\.toml")
        with open(os.path.join(certs, "_default", "hosts.toml")) as f:
            text = f.read()
        lines = [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]
        self.assertEqual(lines, ['server = "http://127.0.0.1:5000"', 'capabilities = ["pull", "resolve"]', "[host]"])


# --------------------------------------------------------------------------
# E: the manifests
# --------------------------------------------------------------------------

class E_Manifests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.join(SOURCE, "deploy/kubernetes")
        cls.docs = {}
        for name in sorted(os.listdir(cls.dir)):
            if name.endswith(".yaml"):
                for d in yaml.safe_load_all(open(os.path.join(cls.dir, name))):
                    cls.docs[(d["kind"], d.get("metadata", {}).get("name"))] = d
        cls.ds = cls.docs[("DaemonSet", "pullgate")]
        cls.pod = cls.ds["spec"]["template"]["spec"]
        cls.main = cls.pod["containers"][0]
        cls.cm = cls.docs[("ConfigMap", "pullgate-config")]
        cls.config = yaml.safe_load(cls.cm["data"]["config.yaml"])

    def volume(self, name: str) -> dict:
        return next(v for v in self.pod["volumes"] if v["name"] == name)

    def test_e1_daemonset_node_facts(self):
        self.assertIs(self.pod["hostNetwork"], True)
        self.assertEqual(self.pod["priorityClassName"], "system-node-critical")
        self.assertIn({"operator": "Exists"}, self.pod["tolerations"])  # no key, no effect: every taint
        probe = self.main["readinessProbe"]["httpGet"]
        host, port = self.config["adminListen"].rsplit(":", 1)
        self.assertEqual((probe["path"], probe["host"], str(probe["port"])), ("/readyz", host, port))
        res = self.main["resources"]
        self.assertIn("memory", res["requests"])
        self.assertIn("memory", res["limits"])
        self.assertGreaterEqual(int(res["limits"]["memory"].removesuffix("Mi")),
                                int(res["requests"]["memory"].removesuffix("Mi")))
        for c in self.pod["containers"] + self.pod["initContainers"]:
            self.assertTrue(c["image"].endswith(f"/pullgate:{A['version']}"), c["image"])
        sc = self.pod["securityContext"]
        self.assertEqual((sc["runAsUser"], sc["runAsNonRoot"]), (65532, True))

    def test_e2_config_and_credentials_volumes(self):
        mounts = {m["name"]: m for m in self.main["volumeMounts"]}
        for c in self.pod["containers"] + self.pod["initContainers"]:
            for m in c.get("volumeMounts", []):
                self.assertNotIn("subPath", m, "subPath mounts never see ConfigMap/Secret updates")
        self.assertEqual(self.volume("config")["configMap"]["name"], "pullgate-config")
        self.assertEqual(mounts["config"]["mountPath"], "/etc/pullgate")
        self.assertEqual(self.main["args"], ["--config", "/etc/pullgate/config.yaml"])
        sec = self.volume("credentials")["secret"]
        secret = self.docs[("Secret", sec["secretName"])]
        self.assertEqual(secret["type"], "kubernetes.io/dockerconfigjson")
        self.assertEqual(sec["items"], [{"key": ".dockerconfigjson", "path": "config.json"}])
        self.assertEqual(os.path.join(mounts["credentials"]["mountPath"], "config.json"),
                         self.config["credentialsFile"])
        providers = self.volume("credential-providers")["hostPath"]["path"]
        self.assertEqual(mounts["credential-providers"]["mountPath"], providers)
        self.assertTrue(mounts["credential-providers"]["readOnly"])

    def test_e3_init_container_writes_hosts_for_the_listen_address(self):
        init = self.pod["initContainers"][0]
        cmd = init["command"]
        self.assertEqual(cmd[:2], ["/usr/bin/pullgate", "containerd-hosts"])
        self.assertEqual(cmd[cmd.index("--mirror") + 1], "http://" + self.config["listen"])
        mount = init["volumeMounts"][0]
        self.assertEqual(cmd[cmd.index("--dir") + 1], mount["mountPath"])
        vol = self.volume(mount["name"])
        self.assertEqual(vol["hostPath"]["path"], "/etc/containerd/certs.d")

    def test_e4_configmap_passes_check_config(self):
        d = h.make_tempdir("pgit-cm-")
        cfg = dict(self.config)
        cfg["credentialsFile"] = os.path.join(d, "config.json")
        secret = self.docs[("Secret", "pullgate-credentials")]
        with open(cfg["credentialsFile"], "w") as f:
            f.write(secret["stringData"][".dockerconfigjson"])
        with open(os.path.join(d, "config.yaml"), "w") as f:
            yaml.safe_dump(cfg, f)
        cp = h.run([os.path.join(A["debroot"], "usr/bin/pullgate"), "check-config", "--config",
                    os.path.join(d, "config.yaml")], check=False)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)

    def test_e5_kustomization_lists_every_manifest(self):
        k = self.docs[("Kustomization", None)]
        files = sorted(n for n in os.listdir(self.dir) if n.endswith(".yaml") and n != "kustomization.yaml")
        self.assertEqual(sorted(k["resources"]), files)


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deb", help="a built .deb (default: run scripts/package.sh)")
    ap.add_argument("--oci", help="a built .oci.tar (with --deb)")
    ap.add_argument("-k", action="append", default=None, metavar="PATTERN")
    ap.add_argument("--keep", action="store_true", help="keep temp dirs (PULLGATE_IT_KEEP=1)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    if args.keep:
        os.environ["PULLGATE_IT_KEEP"] = "1"
    version = read_project_version()
    if args.deb:
        deb, oci = os.path.abspath(args.deb), os.path.abspath(args.oci)
    else:
        t0 = time.monotonic()
        cp = subprocess.run([os.path.join(SOURCE, "scripts/package.sh")], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, env=h.clean_env())
        if cp.returncode != 0:
            print(f"scripts/package.sh failed ({cp.returncode}):\n{cp.stdout[-6000:]}\n{cp.stderr[-6000:]}")
            return 1
        print(f"scripts/package.sh: {time.monotonic() - t0:.0f}s")
        arch = h.run(["dpkg", "--print-architecture"]).stdout.strip()
        deb = os.path.join(SOURCE, "dist", f"pullgate_{version}_{arch}.deb")
        oci = os.path.join(SOURCE, "dist", f"pullgate-{version}.oci.tar")
    debroot = h.make_tempdir("pgit-debroot-")
    h.run(["dpkg-deb", "-x", deb, debroot])
    t0 = time.monotonic()
    # The root has the package's dependencies already, so installing it needs no network.
    tarball = ps.cached_root_tarball(["systemd", "systemd-sysv", "dbus", *ps.deb_depends(deb)])
    base_root = ps.unpack_root(tarball, "pgit-debian12-")
    print(f"root {tarball}, unpacked ({time.monotonic() - t0:.0f}s)")
    A.update(deb=deb, oci=oci, version=version, debroot=debroot, base_root=base_root)

    print(f"network namespace: {h.enter_private_netns('pullgate-pkg')}")
    loader = unittest.TestLoader()
    if args.k:
        loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in args.k]
    t0 = time.monotonic()
    rc = h.run_suite(loader.loadTestsFromModule(sys.modules[__name__]), verbosity=1 if args.quiet else 2)
    print(f"total {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
