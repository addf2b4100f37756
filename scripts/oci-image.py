#!/usr/bin/env python3
"""Writes pullgate's OCI image archive (an OCI image layout in a tar, what
`ctr images import` and `skopeo copy oci-archive:` read) with no base image
and no registry: one layer holding

  /usr/bin/pullgate                 the binary given
  its shared libraries              exactly what `ldd` lists, at those paths
                                    (usr-merged: /lib and /lib64 are symlinks)
  /etc/ssl/certs/ca-certificates.crt   the host's CA bundle (OpenSSL's default
                                    paths /usr/lib/ssl/{cert.pem,certs} point at it)
  /etc/passwd, /etc/group           root and pullgate (65532), the user it runs as
  /etc/nsswitch.conf, /etc/hosts    so getaddrinfo reads files, then DNS
  /etc/pullgate/config.yaml         the packaged config (allows nothing) and an
  /etc/pullgate/config.json         empty credentials file; Kubernetes mounts
                                    its ConfigMap and Secret over them
  /var/log/pullgate/                the decision log's directory, owned by 65532

Entrypoint ["/usr/bin/pullgate", "serve"], Cmd ["--config",
"/etc/pullgate/config.yaml"], User 65532:65532. The archive is reproducible:
every mtime is fixed (SOURCE_DATE_EPOCH, else 0), owners are numeric, gzip
carries no name or time. index.json names the image by its version
(org.opencontainers.image.ref.name) and as pullgate:<version>
(io.containerd.image.name, what `ctr images import` tags it).

python3 stdlib only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

UID = GID = 65532
LIB_DIRS = {"/lib": "usr/lib", "/lib64": "usr/lib64"}


def shared_libraries(binary: str) -> list[str]:
    """The absolute paths ldd resolves for binary, the loader included.
    Fails if any library is not found (the image would not start)."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            sys.exit(f"oci-image: {binary}: {line}")
        m = re.match(r"^(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            paths.append(m.group(1))
    if not any("ld-linux" in p for p in paths):
        sys.exit(f"oci-image: ldd found no program loader for {binary}: static binaries need no libraries,"
                 " but this one lists none:\n" + out)
    return paths


def in_image(path: str) -> str:
    """Where a host library path lives in the usr-merged image (no leading /)."""
    for prefix, target in LIB_DIRS.items():
        if path.startswith(prefix + "/"):
            return target + path[len(prefix):]
    return path.lstrip("/")


class Layer:
    """A tar layer built in memory, entries sorted by path when written."""

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime
        self.entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, path: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(path)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = self.mtime
        return ti

    def directory(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.entries[parent] = (self._info(parent, tarfile.DIRTYPE, 0o755), None)
        self.entries[path.strip("/")] = (self._info(path.strip("/"), tarfile.DIRTYPE, mode, uid, gid), None)

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        path = path.strip("/")
        if "/" in path:
            parent = path.rsplit("/", 1)[0]
            if parent not in self.entries:
                self.directory(parent)
        ti = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        self.entries[path] = (ti, data)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        if "/" in path and path.rsplit("/", 1)[0] not in self.entries:
            self.directory(path.rsplit("/", 1)[0])
        ti = self._info(path, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.entries[path] = (ti, None)

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                ti, data = self.entries[path]
                t.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def build_layer(binary: str, config: str, ca_bundle: str, mtime: int) -> Layer:
    layer = Layer(mtime)
    for d in ("usr/bin", "usr/lib", "usr/lib64", "etc", "tmp", "var/log"):
        layer.directory(d, 0o1777 if d == "tmp" else 0o755)
    for link, target in LIB_DIRS.items():
        layer.symlink(link, target)
    layer.symlink("bin", "usr/bin")
    layer.file("usr/bin/pullgate", read(binary), 0o755)
    for lib in shared_libraries(binary):
        # The kernel opens the program loader (PT_INTERP) for execution.
        layer.file(in_image(lib), read(os.path.realpath(lib)), 0o755 if "/ld-linux" in lib else 0o644)
    layer.file("etc/ssl/certs/ca-certificates.crt", read(ca_bundle))
    layer.symlink("usr/lib/ssl/certs", "/etc/ssl/certs")
    layer.symlink("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt")
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
               b"pullgate:x:%d:%d:pullgate:/nonexistent:/sbin/nologin\n" % (UID, GID))
    layer.file("etc/group", b"root:x:0:\npullgate:x:%d:\n" % GID)
    layer.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.file("etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    layer.directory("etc/pullgate", 0o755)
    layer.file("etc/pullgate/config.yaml", read(config))
    layer.file("etc/pullgate/config.json", b'{\n  "auths": {}\n}\n', 0o640, 0, GID)
    layer.directory("var/log/pullgate", 0o750, UID, GID)
    return layer


def blob(blobs: dict[str, bytes], data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def dumps(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True, help="the pullgate executable (as the .deb ships it)")
    ap.add_argument("--version", required=True, help="image version and tag")
    ap.add_argument("--config", required=True, help="config.yaml to place at /etc/pullgate/config.yaml")
    ap.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt")
    ap.add_argument("--output", required=True, help="the .oci.tar to write")
    args = ap.parse_args()

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    layer_tar = build_layer(args.binary, args.config, args.ca_bundle, mtime).tar()
    layer_gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=layer_gz, mtime=0, compresslevel=9) as gz:
        gz.write(layer_tar)

    blobs: dict[str, bytes] = {}
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(blobs, layer_gz.getvalue())}
    config = {
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "config": {
            "User": f"{UID}:{GID}",
            "Entrypoint": ["/usr/bin/pullgate", "serve"],
            "Cmd": ["--config", "/etc/pullgate/config.yaml"],
            "Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": "pullgate",
                "org.opencontainers.image.version": args.version,
                "org.opencontainers.image.description":
                    "pullgate serve; config at /etc/pullgate/config.yaml (mount a directory over /etc/pullgate)",
            },
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created_by": "scripts/oci-image.py", "comment": f"pullgate {args.version}"}],
    }
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(blobs, dumps(config))}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(blobs, dumps(manifest)),
        "annotations": {"org.opencontainers.image.ref.name": args.version,
                        "io.containerd.image.name": f"pullgate:{args.version}"},
        "platform": {"architecture": config["architecture"], "os": "linux"},
    }
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}

    files = {"oci-layout": dumps({"imageLayoutVersion": "1.0.0"}), "index.json": dumps(index)}
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    tmp = args.output + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
            out.addfile(ti)
        for name in sorted(files):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(files[name]), 0o644, mtime
            out.addfile(ti, io.BytesIO(files[name]))
    os.replace(tmp, args.output)
    print(f"{args.output}: pullgate:{args.version}, layer {len(layer_gz.getvalue())} bytes gzip "
          f"({len(layer_tar)} uncompressed), manifest {manifest_desc['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
