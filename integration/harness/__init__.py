"""Integration-test harness for pullgate (python3 stdlib only).

Starts real components on loopback inside a private network namespace:
a test CA (openssl CLI), distribution registries (``docker-registry``) with
TLS, containerd with its own root/state/socket, and the pullgate daemon.
Everything started is stopped and every temp dir removed at interpreter exit,
also when a test fails (set ``PULLGATE_IT_KEEP=1`` to keep the temp dirs).

Network rule: nothing here talks to anything but 127.0.0.1 inside the
namespace created by :func:`enter_private_netns`.

Suites use ``import harness as h``; every public name of the modules below
is available as ``h.NAME``:

  process     cleanup at exit, temp dirs, ``run``, ``wait_for``, :class:`Service`
              (``diagnostics()`` for failure messages), ``command_output``
  httpclient  the one HTTP client: :func:`http_request`, :class:`HttpConnection`
  net         the private network namespace, :class:`ConnectionCounter`
  tls         :class:`TestCA`
  registry    :class:`Registry` (docker-registry) and its access log
  images      OCI image layouts, ``push_layout`` (skopeo)
  containerd  :class:`Containerd`, hosts.toml writers
  pullgate    :class:`Pullgate`, ``v2_path`` (a request target), ``to_yaml``
  metrics     pullgate's /metrics: ``scrape_metrics``, ``metric_value``
  tokens      docker config.json, :class:`JwtSigner`, :class:`TokenServer`
  cri         ``cri_pull_image`` (CRI over containerd's gRPC socket)
  stub        :class:`StubMirror`
  suite       ``run_suite``, ``suite_main``
"""

from .process import (PR_SET_PDEATHSIG, SANITIZED, Service, clean_env, command_output, free_port,
                      keep_temp, make_tempdir, port_open, read_proc_status, register_cleanup, run,
                      run_cleanups, wait_for)
from .httpclient import HttpConnection, HttpResponse, http_request
from .net import (CLONE_NEWNET, ConnectionCounter, enter_private_netns, namespace_inode,
                  namespace_inode_before_netns)
from .tls import TestCA
from .images import (CONTAINERD_MANIFEST_ACCEPT, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG,
                     OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Descriptor, ImageInfo, LayerFile,
                     LayerSpec, RandomBytes, build_oci_layout, push_layout)
from .registry import AccessEntry, Registry
from .containerd import Containerd, overlay_supported, write_direct_hosts, write_no_bypass_hosts
from .pullgate import Pullgate, to_yaml, v2_path
from .metrics import (Metrics, MetricsUnavailable, PromParseError, metric_value, metrics_url,
                      scrape_metrics)
from .tokens import (JwtSigner, TokenRequest, TokenServer, basic_auth_value, libtrust_key_id,
                     write_docker_config)
from .cri import cri_pull_image, pb_field_bytes, pb_parse
from .stub import StubMirror
from .suite import run_suite, suite_main

__all__ = [
    "PR_SET_PDEATHSIG", "SANITIZED", "Service", "clean_env", "free_port", "keep_temp",
    "make_tempdir", "port_open", "read_proc_status", "register_cleanup", "run", "run_cleanups",
    "wait_for", "command_output",
    "HttpConnection", "HttpResponse", "http_request",
    "CLONE_NEWNET", "ConnectionCounter", "enter_private_netns", "namespace_inode",
    "namespace_inode_before_netns",
    "TestCA",
    "CONTAINERD_MANIFEST_ACCEPT", "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST", "OCI_CONFIG",
    "OCI_INDEX", "OCI_LAYER_TAR", "OCI_MANIFEST", "Descriptor", "ImageInfo", "LayerFile",
    "LayerSpec", "RandomBytes", "build_oci_layout", "push_layout",
    "AccessEntry", "Registry",
    "Containerd", "overlay_supported", "write_direct_hosts", "write_no_bypass_hosts",
    "Pullgate", "to_yaml", "v2_path",
    "Metrics", "MetricsUnavailable", "PromParseError", "metric_value", "metrics_url",
    "scrape_metrics",
    "JwtSigner", "TokenRequest", "TokenServer", "basic_auth_value", "libtrust_key_id",
    "write_docker_config",
    "cri_pull_image", "pb_field_bytes", "pb_parse",
    "StubMirror",
    "run_suite", "suite_main",
]
