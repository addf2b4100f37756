"""Helpers for test_package.py (python3 stdlib only): Debian 12 roots made
with mmdebstrap and cached as tarballs, a chroot with services kept from
starting, a root booted under real systemd with systemd-nspawn, and the
facts read from a built .deb.

mmdebstrap reads the Debian mirror from this machine's apt sources (nothing
here names a mirror). It is the only thing that touches the network, and it
runs before the tests enter their private network namespace; a cached root
needs no network at all.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from typing import Optional

import harness as h

CACHE_DIR = os.environ.get("PULLGATE_ROOT_CACHE", "/var/cache/pullgate-test")
SUITE = "bookworm"


# --------------------------------------------------------------------------
# the .deb
# --------------------------------------------------------------------------

def deb_field(deb: str, field: str) -> str:
    return h.run(["dpkg-deb", "-f", deb, field]).stdout.strip()


def deb_depends(deb: str) -> list[str]:
    """Package names of the .deb's Depends (first alternative of each)."""
    names = []
    for dep in deb_field(deb, "Depends").split(","):
        name = dep.split("|")[0].strip().split(" ")[0].split(":")[0]
        if name:
            names.append(name)
    return names


# --------------------------------------------------------------------------
# cached mmdebstrap roots
# --------------------------------------------------------------------------

def host_debian_sources() -> str:
    """This machine's apt sources for Debian 12, as one-line sources.list
    entries: every enabled entry whose suite is bookworm or bookworm-*."""
    entries = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for stanza in re.split(r"\n\s*\n", f.read()):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[0].isspace():
                        continue
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                    continue
                signed = fields.get("signed-by", "")
                opts = f"[signed-by={signed}] " if signed.startswith("/") else ""
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        if suite == SUITE or suite.startswith(SUITE + "-"):
                            entries.append(f"deb {opts}{uri} {suite} {fields.get('components', 'main')}")
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$", line.split("#")[0].strip())
                if m and (m.group(3) == SUITE or m.group(3).startswith(SUITE + "-")):
                    entries.append(m.group(0))
    if not entries:
        raise RuntimeError("no Debian 12 (bookworm) entry in this machine's apt sources for mmdebstrap")
    return "\n".join(sorted(set(entries))) + "\n"


def cached_root_tarball(packages: list[str], variant: str = "minbase") -> str:
    """A tarball of a Debian 12 root (``variant`` plus ``packages``) from
    CACHE_DIR, made with mmdebstrap when absent. The key is the variant and
    the sorted package list, so a changed list makes a new root."""
    pkgs = sorted(set(packages))
    key = hashlib.sha256(f"{SUITE} {variant} {' '.join(pkgs)}".encode()).hexdigest()[:16]
    tarball = os.path.join(CACHE_DIR, f"root-{SUITE}-{variant}-{key}.tar")
    if os.path.exists(tarball):
        return tarball
    os.makedirs(CACHE_DIR, exist_ok=True)
    sources = os.path.join(CACHE_DIR, f"sources-{key}.list")
    with open(sources, "w") as f:
        f.write(host_debian_sources())
    tmp = tarball[:-len(".tar")] + ".part.tar"
    t0 = time.monotonic()
    h.run(["mmdebstrap", "--quiet", "--format=tar", f"--variant={variant}", "--include=" + ",".join(pkgs),
           SUITE, tmp, sources], timeout=1800)
    os.replace(tmp, tarball)
    os.unlink(sources)
    print(f"\n  made {tarball} in {time.monotonic() - t0:.0f}s", end=" ")
    return tarball


def unpack_root(tarball: str, prefix: str) -> str:
    """A fresh directory holding the root from ``tarball`` (removed at exit)."""
    root = h.make_tempdir(prefix, parent="/var/tmp")
    h.run(["tar", "-C", root, "--numeric-owner", "-xpf", tarball], timeout=600)
    return root


def root_copy(base: str, prefix: str) -> str:
    """A root of its own that starts as ``base``: an overlay mount on top of
    it (nothing written reaches ``base``), or a full copy where overlayfs is
    not available. Removed at exit."""
    d = h.make_tempdir(prefix, parent="/var/tmp")
    root = os.path.join(d, "root")
    os.mkdir(root)
    if h.overlay_supported(d):
        upper, work = os.path.join(d, "upper"), os.path.join(d, "work")
        os.mkdir(upper)
        os.mkdir(work)
        h.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir={upper},workdir={work}", root])
    else:
        h.run(["cp", "-a", base + "/.", root], timeout=600)
    return root


# --------------------------------------------------------------------------
# chroot: package scripts run, services do not start
# --------------------------------------------------------------------------

class Chroot:
    """``chroot ROOT`` with /proc, /sys and /dev mounted, and a policy-rc.d
    that refuses every service start (invoke-rc.d and deb-systemd-invoke
    honour it; systemctl itself only enables in a chroot)."""

    def __init__(self, root: str) -> None:
        self.root = root
        for src, dst, extra in (("proc", "proc", ["-t", "proc"]), ("sysfs", "sys", ["-t", "sysfs"]),
                                ("/dev", "dev", ["--rbind"])):
            target = os.path.join(root, dst)
            os.makedirs(target, exist_ok=True)
            h.run(["mount", *extra, src, target])
            h.register_cleanup(f"umount {target}",
                               lambda t=target: subprocess.run(["umount", "-R", "-l", t], check=False))
        policy = os.path.join(root, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# test chroot: no service starts\nexit 101\n")
        os.chmod(policy, 0o755)

    def run(self, *argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LANG": "C.UTF-8", "HOME": "/root"}
        return h.run(["chroot", self.root, *argv], check=check, timeout=timeout, env=env)

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/"))


def tree_listing(root: str, skip: tuple = ("proc", "sys", "dev", "tmp", "run")) -> set[str]:
    """Every path under root (relative), without the pseudo filesystems and /run."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in dirnames + filenames:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


# --------------------------------------------------------------------------
# a root booted under systemd
# --------------------------------------------------------------------------

class Booted:
    """``systemd-nspawn -D ROOT --boot --register=no --keep-unit
    --private-network``: real systemd as PID 1 of a container whose network
    namespace holds only ``lo``. ``run`` executes a command inside with
    ``nsenter -t <its PID 1> -a``; ``netns_run`` runs a host command in its
    network namespace only."""

    def __init__(self, root: str, boot_timeout: float = 120) -> None:
        self.root = os.path.realpath(root)
        self.log_path = os.path.join(h.make_tempdir("pgit-nspawn-"), "nspawn.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", self.root, "--boot", "--register=no", "--keep-unit",
             "--private-network", "--quiet", "--console=pipe"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            env=h.clean_env(SYSTEMD_NSPAWN_TMPFS_TMP="0"), start_new_session=True)
        h.register_cleanup("systemd-nspawn", self.shutdown)
        self.pid1 = h.wait_for(self._find_pid1, 30, interval=0.2, what="the container's PID 1")
        # Boot is done when no job is left (running, or degraded if some unit
        # irrelevant here failed in a container).
        h.wait_for(lambda: self.run("systemctl", "is-system-running", check=False).stdout.strip()
                   in ("running", "degraded"), boot_timeout, interval=0.5, what="container boot")

    def _find_pid1(self) -> Optional[int]:
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.tail()}")
        # The container's init is a child of systemd-nspawn, PID 1 in its own PID namespace.
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as f:
                    status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            except OSError:
                continue
            if int(status.get("PPid", "0")) == self.proc.pid and status.get("NSpid", "").split()[-1:] == ["1"]:
                return int(entry)
        return None

    def tail(self, n: int = 4000) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        return h.run(["nsenter", "-t", str(self.pid1), "-a", "env", "-i",
                      *[f"{k}={v}" for k, v in env.items()], *argv], check=check, timeout=timeout,
                     env=h.clean_env())

    def netns_run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return h.run(["nsenter", "-t", str(self.pid1), "-n", *argv], check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *[f"--property={p}" for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/"))

    def shutdown(self) -> None:
        """Power the container off (SIGTERM to nspawn = a clean shutdown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def copy_into(root: str, src: str, dest: str) -> str:
    """Copy a host file into the root; returns its path as seen inside."""
    target = os.path.join(root, dest.lstrip("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy(src, target)
    return dest
