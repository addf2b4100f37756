"""The private network namespace every suite runs in, and a SYN counter
on one of its ports (iptables, never the host's firewall)."""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Optional, Union

from .process import _libc, register_cleanup, run


CLONE_NEWNET = 0x40000000

_netns_name: Optional[str] = None
_namespaces_before: dict[str, int] = {}


def _setns(fd: int, nstype: int) -> None:
    if hasattr(os, "setns"):  # python >= 3.12
        os.setns(fd, nstype)
        return
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter_private_netns(name_prefix: str = "pullgate-test") -> str:
    """Create netns ``<prefix>-<pid>`` with only ``lo`` (up) and move this
    process into it; returns the name. Deleted at exit.

    Only the network namespace changes (no ``ip netns exec``): the mount
    namespace, so /sys/fs/cgroup as runc/containerd need it, stays as is.
    Must be called before any thread is started: setns() moves only the
    calling thread; children forked from it inherit the namespace.
    """
    global _netns_name
    if _netns_name is not None:
        return _netns_name
    if threading.active_count() != 1:
        raise RuntimeError("enter_private_netns must run before any thread is started")
    name = f"{name_prefix}-{os.getpid()}"
    for kind in ("net", "mnt"):
        _namespaces_before[kind] = os.stat(f"/proc/self/ns/{kind}").st_ino
    run(["ip", "netns", "add", name])
    register_cleanup(f"netns {name}",
                     lambda: run(["ip", "netns", "delete", name], check=False))
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)
    run(["ip", "link", "set", "lo", "up"])
    links = run(["ip", "-o", "link", "show"]).stdout.strip().splitlines()
    names = [ln.split(":")[1].strip().split("@")[0] for ln in links]
    if names != ["lo"]:
        raise RuntimeError(f"netns {name} is not private: links {names}")
    _netns_name = name
    return name


def namespace_inode(kind: str = "net", pid: Union[int, str] = "self") -> int:
    """Inode of a process's namespace of ``kind`` (net, mnt, ...)."""
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def namespace_inode_before_netns(kind: str = "net") -> Optional[int]:
    """Inode of this process's ``kind`` namespace before enter_private_netns."""
    return _namespaces_before.get(kind)


class ConnectionCounter:
    """Counts TCP connection attempts (SYNs) to 127.0.0.1:PORT with an
    iptables rule in the private netns. Unlike an access log it also sees
    connections that never became a logged HTTP request (e.g. plain HTTP
    sent to a TLS port, which Go answers 400 without logging anything)."""

    def __init__(self, port: int) -> None:
        if _netns_name is None:
            raise RuntimeError("ConnectionCounter needs enter_private_netns() first "
                               "(it must never touch the host's firewall)")
        self.port = port
        self.tag = f"pullgate-syn-{port}"
        self._rule = ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), "--syn",
                      "-m", "comment", "--comment", self.tag, "-j", "ACCEPT"]
        run(["iptables", "-w", "-A", *self._rule])
        register_cleanup(f"iptables rule {self.tag}",
                         lambda: run(["iptables", "-w", "-D", *self._rule], check=False))

    def count(self) -> int:
        """SYNs seen so far on the port."""
        out = run(["iptables", "-w", "-L", "INPUT", "-n", "-v", "-x"]).stdout
        for line in out.splitlines():
            if f"/* {self.tag} */" in line:
                return int(line.split()[0])
        raise RuntimeError(f"iptables rule {self.tag} is gone")
