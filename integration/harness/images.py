"""OCI image layouts written on disk (streamed, uncompressed tar layers)
and pushed to a registry with skopeo."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
import time
from typing import TYPE_CHECKING, Optional, Union

from .process import clean_env, make_tempdir, run

if TYPE_CHECKING:
    from .registry import Registry


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# What containerd 1.6 sends when resolving a tag (README "Pointing containerd at pullgate").
CONTAINERD_MANIFEST_ACCEPT = ", ".join(
    [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"])


class RandomBytes:
    """File content of ``size`` random bytes, generated while it is written."""

    def __init__(self, size: int) -> None:
        self.size = size


LayerFile = Union[bytes, RandomBytes]
LayerSpec = Union[LayerFile, dict]  # dict: path -> LayerFile | (LayerFile, mode)


class _RandomReader:
    """A read-only stream of ``size`` random bytes (never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        n = min(n, 1 << 20)
        self.left -= n
        return os.urandom(n)


class _HashingWriter(io.RawIOBase):
    """Writes to a file while computing sha256 and size."""

    def __init__(self, f) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.f.write(b)
        self.h.update(b)
        self.size += len(b)
        return len(b)


@dataclasses.dataclass
class Descriptor:
    """An OCI content descriptor (mediaType, digest, size)."""
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclasses.dataclass
class ImageInfo:
    """What build_oci_layout wrote: manifest, config and layer descriptors."""
    layout_dir: str
    tag: str
    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]

    @property
    def manifest_digest(self) -> str:
        return self.manifest.digest

    @property
    def layer_digests(self) -> list[str]:
        return [d.digest for d in self.layers]

    @property
    def blob_digests(self) -> list[str]:
        """Config and layer digests (what a pull fetches as blobs)."""
        return [self.config.digest] + self.layer_digests


def _write_blob(blobs_dir: str, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs_dir, digest.split(":")[1]), "wb") as f:
        f.write(data)
    return digest, len(data)


def _write_layer_tar(blobs_dir: str, files: dict) -> tuple[str, int]:
    """Write an uncompressed tar of ``files`` (path -> bytes | RandomBytes |
    (content, mode)) as a blob, streaming; returns (digest, size)."""
    tmp = os.path.join(blobs_dir, f".tmp-{os.getpid()}-{time.monotonic_ns()}")
    with open(tmp, "wb") as raw:
        hw = _HashingWriter(raw)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            dirs_done = set()
            for path in sorted(files):
                content = files[path]
                parts = path.strip("/").split("/")
                for i in range(1, len(parts)):
                    d = "/".join(parts[:i])
                    if d not in dirs_done:
                        dirs_done.add(d)
                        ti = tarfile.TarInfo(d)
                        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
                        tar.addfile(ti)
                mode = 0o644
                if isinstance(content, tuple):
                    content, mode = content
                ti = tarfile.TarInfo(path.strip("/"))
                ti.mode, ti.mtime = mode, 0
                if isinstance(content, RandomBytes):
                    ti.size = content.size
                    tar.addfile(ti, _RandomReader(content.size))
                else:
                    ti.size = len(content)
                    tar.addfile(ti, io.BytesIO(content))
    digest = "sha256:" + hw.h.hexdigest()
    os.replace(tmp, os.path.join(blobs_dir, digest.split(":")[1]))
    return digest, hw.size


def build_oci_layout(layout_dir: str, layers: list[LayerSpec], tag: str) -> ImageInfo:
    """Write an OCI image layout with uncompressed tar layers.

    Each element of ``layers`` is one layer: ``bytes`` or ``RandomBytes(n)``
    (a single file ``data/layer-<i>.bin``), or a dict path -> content, where
    content may also be ``(content, mode)``, e.g. ``(elf_bytes, 0o755)``.
    Layers are streamed to disk (a 64 MiB RandomBytes layer never sits in
    memory). Returns the descriptors; the manifest is tagged ``tag`` in
    index.json (``org.opencontainers.image.ref.name``).
    """
    blobs = os.path.join(layout_dir, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    layer_descs = []
    for i, spec in enumerate(layers):
        files = spec if isinstance(spec, dict) else {f"data/layer-{i}.bin": spec}
        digest, size = _write_layer_tar(blobs, files)
        layer_descs.append(Descriptor(OCI_LAYER_TAR, digest, size))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layer_descs]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"pullgate harness layer {i}"}
                    for i in range(len(layer_descs))],
    }
    cdigest, csize = _write_blob(blobs, json.dumps(config, separators=(",", ":")).encode())
    config_desc = Descriptor(OCI_CONFIG, cdigest, csize)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [d.to_json() for d in layer_descs],
    }
    mdigest, msize = _write_blob(blobs, json.dumps(manifest, separators=(",", ":")).encode())
    manifest_desc = Descriptor(OCI_MANIFEST, mdigest, msize)
    index_path = os.path.join(layout_dir, "index.json")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        index["manifests"] = [m for m in index.get("manifests", [])
                              if m.get("annotations", {}).get(
                                  "org.opencontainers.image.ref.name") != tag]
    entry = manifest_desc.to_json()
    entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index["manifests"].append(entry)
    with open(index_path, "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout_dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return ImageInfo(layout_dir, tag, manifest_desc, config_desc, layer_descs)


def push_layout(layout_dir: str, registry: Registry, repo: str, tag: str,
                ca_dir: Optional[str] = None, expected_digest: Optional[str] = None,
                timeout: float = 300) -> str:
    """``skopeo copy --preserve-digests oci:DIR:tag docker://HOST/repo:tag``.

    Uses registry credentials when it has htpasswd. Checks that the registry
    serves the manifest under the digest written in the layout (or
    ``expected_digest``) and returns that digest.
    """
    ca_dir = ca_dir or registry.ca.cert_dir
    work = make_tempdir("pgit-skopeo-")
    policy = os.path.join(work, "policy.json")
    with open(policy, "w") as f:
        json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    digestfile = os.path.join(work, "digest")
    argv = ["skopeo", "--policy", policy, "--tmpdir", work, "copy",
            "--preserve-digests", "--dest-cert-dir", ca_dir, "--digestfile", digestfile]
    if registry.credentials:
        argv += ["--dest-creds", ":".join(registry.credentials)]
    else:
        argv += ["--dest-no-creds"]
    argv += [f"oci:{layout_dir}:{tag}", f"docker://{registry.host}/{repo}:{tag}"]
    run(argv, timeout=timeout, env=clean_env(HOME=work, XDG_RUNTIME_DIR=work))
    if expected_digest is None:
        with open(os.path.join(layout_dir, "index.json")) as f:
            for m in json.load(f)["manifests"]:
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                    expected_digest = m["digest"]
    with open(digestfile) as f:
        pushed = f.read().strip()
    served = registry.head_manifest(repo, tag).header("Docker-Content-Digest")
    if not (pushed == served == expected_digest):
        raise RuntimeError(f"push changed the manifest digest: layout {expected_digest}, "
                           f"skopeo {pushed}, registry {served}")
    return pushed
