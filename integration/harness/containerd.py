"""containerd with a private root, state and socket, and the hosts.toml
files that route its pulls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Iterable, Optional

from .process import Service, clean_env, make_tempdir, run, wait_for
from .registry import Registry


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def write_no_bypass_hosts(hosts_dir: str, mirror_url: str) -> str:
    """Write HOSTS_DIR/_default/hosts.toml routing every registry through the
    mirror with no fallback (README "Pointing containerd at pullgate"); returns the file path."""
    d = os.path.join(hosts_dir, "_default")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "hosts.toml")
    with open(path, "w") as f:
        f.write(f'server = {_toml_str(mirror_url)}\n'
                'capabilities = ["pull", "resolve"]\n'
                '\n'
                '[host]\n')
    return path


def write_direct_hosts(hosts_dir: str, registry: Registry, ca_file: Optional[str] = None) -> str:
    """Write HOSTS_DIR/<host:port>/hosts.toml pulling straight from the
    registry over TLS, trusting ``ca_file`` (default: the registry's CA)."""
    d = os.path.join(hosts_dir, registry.host)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "hosts.toml")
    with open(path, "w") as f:
        f.write(f'server = {_toml_str(registry.url)}\n'
                f'ca = {_toml_str(ca_file or registry.ca.ca_cert)}\n'
                'capabilities = ["pull", "resolve"]\n'
                '\n'
                '[host]\n')  # containerd 1.6.20 ignores a file without a [host] table
    return path


def overlay_supported(probe_parent: str) -> bool:
    """Try an actual overlay mount under ``probe_parent`` (as containerd's
    overlayfs snapshotter does at init)."""
    base = tempfile.mkdtemp(prefix="overlay-probe-", dir=probe_parent)
    try:
        dirs = {k: os.path.join(base, k) for k in ("lower", "upper", "work", "merged")}
        for d in dirs.values():
            os.mkdir(d)
        cp = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}",
             dirs["merged"]], capture_output=True)
        if cp.returncode != 0:
            return False
        subprocess.run(["umount", dirs["merged"]], check=False)
        return True
    finally:
        shutil.rmtree(base, ignore_errors=True)


_UNSET = object()


class Containerd(Service):
    """containerd with private root, state and socket (never the system one).

    ``snapshotter``: "auto" (overlayfs if an overlay mount works here, else
    native), or a name. The CRI plugin is on with
    ``registry.config_path = hosts_dir`` (for CRI pulls). ``trust_ca_file``
    is exported as SSL_CERT_FILE (with an empty SSL_CERT_DIR) to the daemon
    and to ctr, so a pull that went *around* the mirror straight to a test
    registry would succeed — which is what a no-bypass test needs.
    """

    name = "containerd"
    DISABLED_PLUGINS = [
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]

    def __init__(self, hosts_dir: Optional[str] = None, snapshotter: str = "auto",
                 namespace: str = "pgtest", trust_ca_file: Optional[str] = None,
                 start: bool = True) -> None:
        super().__init__()
        self.dir = make_tempdir("pgit-containerd-")
        self.root = os.path.join(self.dir, "root")
        self.state = os.path.join(self.dir, "state")
        self.address = os.path.join(self.dir, "containerd.sock")
        self.namespace = namespace
        self.hosts_dir = hosts_dir or os.path.join(self.dir, "certs.d")
        os.makedirs(self.hosts_dir, exist_ok=True)
        for d in (self.root, self.state, os.path.join(self.dir, "cni-conf"),
                  os.path.join(self.dir, "cni-bin"), os.path.join(self.dir, "opt")):
            os.makedirs(d, exist_ok=True)
        if snapshotter == "auto":
            snapshotter = "overlayfs" if overlay_supported(self.dir) else "native"
        self.snapshotter = snapshotter
        self.trust_ca_file = trust_ca_file
        self.cert_dir_empty = os.path.join(self.dir, "no-system-cas")
        os.makedirs(self.cert_dir_empty, exist_ok=True)
        self.config_path = os.path.join(self.dir, "config.toml")
        with open(self.config_path, "w") as f:
            f.write(self._config())
        if start:
            self.start()

    def _config(self) -> str:
        q = _toml_str
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        return "\n".join([
            "version = 2",
            f"root = {q(self.root)}",
            f"state = {q(self.state)}",
            "disabled_plugins = [" + ", ".join(q(p) for p in self.DISABLED_PLUGINS) + "]",
            "",
            "[grpc]",
            f"  address = {q(self.address)}",
            "[ttrpc]",
            f"  address = {q(self.address + '.ttrpc')}",
            "[debug]",
            '  address = ""',
            '  level = "info"',
            "[metrics]",
            '  address = ""',
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {q(os.path.join(self.dir, 'opt'))}",
            cri,
            "  disable_tcp_service = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            "  enable_selinux = false",
            f"{cri[:-1]}.containerd]",
            f"  snapshotter = {q(self.snapshotter)}",
            f"{cri[:-1]}.cni]",
            f"  bin_dir = {q(os.path.join(self.dir, 'cni-bin'))}",
            f"  conf_dir = {q(os.path.join(self.dir, 'cni-conf'))}",
            f"{cri[:-1]}.registry]",
            f"  config_path = {q(self.hosts_dir)}",
            "",
        ])

    def _env(self, trust_ca_file) -> dict:
        if trust_ca_file:
            return clean_env(SSL_CERT_FILE=trust_ca_file, SSL_CERT_DIR=self.cert_dir_empty)
        return clean_env()

    def start(self, timeout: float = 30) -> None:
        """Start containerd and wait until ``ctr version`` answers."""
        self._spawn(["containerd", "--config", self.config_path, "--log-level", "info"],
                    self.dir, env=self._env(self.trust_ca_file))

        def ready():
            self.check_alive()
            return os.path.exists(self.address) and self.ctr(
                "version", check=False, timeout=5).returncode == 0
        wait_for(ready, timeout, interval=0.1, what="containerd socket")

    def ctr(self, *args: str, check: bool = True, timeout: float = 300,
            trust_ca_file=_UNSET) -> subprocess.CompletedProcess:
        """Run ``ctr --address SOCK -n NAMESPACE ARGS...``."""
        ca = self.trust_ca_file if trust_ca_file is _UNSET else trust_ca_file
        return run(["ctr", "--address", self.address, "-n", self.namespace, *args],
                   check=check, timeout=timeout, env=self._env(ca))

    def plugins(self) -> dict[str, str]:
        """Plugin "type.id" -> status (ok / error / skip) from ``ctr plugins ls``."""
        out = self.ctr("plugins", "ls").stdout.splitlines()
        result = {}
        for line in out[1:]:
            cols = line.split()
            if len(cols) >= 4:
                result[f"{cols[0]}.{cols[1]}"] = cols[-1]
        return result

    def pull(self, ref: str, hosts_dir: Optional[str] = None, platform: str = "linux/amd64",
             timeout: float = 600, trust_ca_file=_UNSET,
             extra_args: Iterable[str] = ()) -> subprocess.CompletedProcess:
        """``ctr images pull --hosts-dir HOSTS_DIR --platform P REF`` (no check)."""
        return self.ctr("images", "pull", "--hosts-dir", hosts_dir or self.hosts_dir,
                        "--platform", platform, "--snapshotter", self.snapshotter,
                        *extra_args, ref, check=False, timeout=timeout,
                        trust_ca_file=trust_ca_file)

    def images(self) -> dict[str, str]:
        """Image ref -> target digest from ``ctr images ls``."""
        out = self.ctr("images", "ls").stdout.splitlines()
        result = {}
        for line in out[1:]:
            cols = line.split()
            if len(cols) >= 3:
                result[cols[0]] = cols[2]
        return result

    def image_digest(self, ref: str) -> Optional[str]:
        """Target digest of ``ref`` in ``ctr images ls``, or None."""
        return self.images().get(ref)

    def content_digests(self) -> set[str]:
        """Digests of all committed content (``ctr content ls``)."""
        out = self.ctr("content", "ls").stdout.splitlines()
        return {line.split()[0] for line in out[1:] if line.startswith("sha256:")}

    def remove_image(self, ref: str) -> None:
        """Remove an image and prune its content (so a re-pull fetches again)."""
        self.ctr("images", "rm", "--sync", ref, check=False)
        self.ctr("content", "prune", "references", check=False)
