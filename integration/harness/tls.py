"""A throwaway test CA (openssl CLI) with a server cert for 127.0.0.1."""

from __future__ import annotations

import os
import ssl
from typing import Iterable, Optional

from .process import make_tempdir, run


class TestCA:
    """A throwaway CA plus a server cert for 127.0.0.1 / localhost.

    Layout: ``cert_dir/ca.crt`` only (usable as skopeo --*-cert-dir and as
    containerd ``ca =``), ``private/ca.key``, ``server.crt``, ``server.key``.
    """

    __test__ = False  # not a unittest/pytest test class

    def __init__(self, workdir: Optional[str] = None, cn: str = "pullgate-test-ca") -> None:
        self.dir = workdir or make_tempdir("pgit-ca-")
        self.cert_dir = os.path.join(self.dir, "certs")
        os.makedirs(self.cert_dir, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "private"), mode=0o700, exist_ok=True)
        self.ca_cert = os.path.join(self.cert_dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "private", "ca.key")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-days", "2", "-subj", f"/CN={cn}",
             "-keyout", self.ca_key, "-out", self.ca_cert,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self.server_cert, self.server_key = self.issue(
            "server", ips=["127.0.0.1"], dns=["localhost"])

    def issue(self, name: str, ips: Iterable[str] = (), dns: Iterable[str] = (),
              client: bool = False) -> tuple[str, str]:
        """Issue a leaf cert signed by the CA; returns (cert path, key path)."""
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        crt = os.path.join(self.dir, f"{name}.crt")
        ext = os.path.join(self.dir, f"{name}.ext")
        sans = [f"IP:{i}" for i in ips] + [f"DNS:{d}" for d in dns]
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-subj", f"/CN={next(iter(ips), None) or next(iter(dns), name)}",
             "-keyout", key, "-out", csr])
        run(["openssl", "x509", "-req", "-sha256", "-days", "2", "-in", csr,
             "-CA", self.ca_cert, "-CAkey", self.ca_key,
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
             "-extfile", ext, "-out", crt])
        return crt, key

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext that trusts only this CA."""
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        return ctx
