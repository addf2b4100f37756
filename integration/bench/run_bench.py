#!/usr/bin/python3
"""pullgate benchmark: CPU seconds per GiB, throughput, what containerd
sees, memory and manifest latency, against a direct TLS pull, nginx as a
credential-injecting reverse proxy and distribution's own proxy mode.

Run (as root, from the repository root):

    /usr/bin/python3 integration/bench/run_bench.py --pullgate build/pullgate [--quick] [--json out.json]
    /usr/bin/python3 integration/bench/run_bench.py --pullgate build/pullgate --profile
    /usr/bin/python3 integration/bench/run_bench.py --pullgate NEW --compare OLD [--runs N]
    /usr/bin/python3 integration/bench/run_bench.py --pullgate NEW --only manifest [--compare OLD]

Everything runs in one private network namespace with only ``lo`` (made by
integration/harness/); nothing talks to anything but 127.0.0.1.

Phases (integration/bench/README.md has the details)
  1  TLS docker-registry with htpasswd (bcrypt) Basic auth; a 512 MiB and a
     64 MiB random blob pushed through the registry API, bench/blob:v1 (both
     layers) and bench/blob:layer1 (the 512 MiB layer alone); a second
     registry without auth on the same storage.
  2  pullgate; nginx tuned and with default buffers (credentials injected);
     a tuned nginx in front of the registry without auth.
  3  SHA-256's own cost (openssl speed, user CPU per GiB); the 512 MiB blob
     with curl: direct, pullgate, pullgate with Range: bytes=0- (never
     hashed), nginx-tuned, nginx-default, distribution's proxy mode cold (a
     fresh process and storage per download); each path hashed once, then N
     interleaved runs; CPU-s/GiB of the proxy's processes from /proc.
  4  containerd ``ctr content fetch`` of bench/blob:layer1: direct, through
     pullgate (no-bypass hosts.toml), through nginx-tuned; interleaved.
  5  3 and 8 concurrent 512 MiB downloads: direct, pullgate, nginx-tuned.
  6  a FRESH pullgate with 100 concurrent 64 MiB downloads (peak VmHWM);
     another with 1000 idle keep-alive connections (RSS per connection).
  7  manifest HEAD (ab -i -k) and GET (wrk --latency) against the registry
     without auth: pullgate, nginx-tuned, the registry alone, with each
     target's CPU per request; then GET over one connection (added p99).
  8  summary, the performance targets with PASS/FAIL, optional JSON.

Exit status: 0 unless a correctness check failed (wrong bytes, a failed or
short download, an error status or socket error under load, a component
that died). Missed performance targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from typing import Optional

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # integration/ (the harness package)
sys.path.insert(0, HERE)
import harness as h  # noqa: E402
import bench_helpers as bh  # noqa: E402

MiB = bh.MiB
GiB = bh.GiB
REPO = "bench/blob"
TAG = "v1"
LAYER_TAG = "layer1"
BIG_SIZE = 512 * MiB
MID_SIZE = 64 * MiB
CONCURRENT_STREAMS = 100
HASHED_STREAMS = 4
IDLE_CONNECTIONS = 1000
IDLE_TARGET_KIB = 64
RSS_TARGET_KIB = 32 * 1024


def expect_status(path_name: str) -> int:
    """The status a path answers: 206 for the Range: bytes=0- paths."""
    return 206 if path_name.endswith("-range") else 200

T0 = time.monotonic()
FAILURES: list[str] = []     # correctness failures (exit 1)
WARNINGS: list[str] = []     # worth reading, not failures


LOADAVG: dict = {}
CPU_MARKS: dict = {}   # phase -> (monotonic s, machine busy CPU-s, this benchmark's CPU-s)


def note_load(when: str) -> None:
    """Remember the machine's 1-minute load average, and the CPU time of the
    whole machine and of this benchmark's own processes, so that the summary
    can say how much other work shared the cores (it skews every figure)."""
    LOADAVG[when] = round(os.getloadavg()[0], 2)
    CPU_MARKS[when] = (time.monotonic(), bh.machine_busy_cpu_seconds(), bh.own_tree_cpu_seconds())


def other_work() -> Optional[dict]:
    """Average cores used by processes other than this benchmark's, from
    the first mark to the last (the load average cannot tell: the
    benchmark's own registry, proxy and client make it ~3 on their own)."""
    if len(CPU_MARKS) < 2:
        return None
    marks = list(CPU_MARKS.values())
    (t0, busy0, own0), (t1, busy1, own1) = marks[0], marks[-1]
    wall = t1 - t0
    if wall <= 0:
        return None
    other = max(0.0, (busy1 - busy0) - (own1 - own0))
    return {"wall_s": round(wall, 1), "machine_busy_cores": round((busy1 - busy0) / wall, 2),
            "benchmark_cores": round((own1 - own0) / wall, 2), "other_cores": round(other / wall, 2)}


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def fail(msg: str) -> None:
    FAILURES.append(msg)
    log("CORRECTNESS FAILURE: " + msg)


def mibs(bytes_per_s: float) -> float:
    return bytes_per_s / MiB


# --------------------------------------------------------------------------
# phase 1: registry and content
# --------------------------------------------------------------------------

def setup_registry(work: str) -> dict:
    ca = h.TestCA()
    password = os.urandom(12).hex()
    reg = h.Registry(ca, name="bench-registry", htpasswd=("bench", password),
                     extra_config={"log": {"level": "warn", "accesslog": {"disabled": True}}})
    log(f"registry {reg.host} (TLS, htpasswd bcrypt) pid {reg.pid}")
    blobs = {}
    for label, size in (("big", BIG_SIZE), ("mid", MID_SIZE)):
        path = os.path.join(work, f"{label}.bin")
        t = time.monotonic()
        digest = bh.write_random_file(path, size)
        t_gen = time.monotonic() - t
        t = time.monotonic()
        bh.upload_blob(reg, REPO, digest, size, path=path)
        log(f"{label} blob {size // MiB} MiB {digest[:19]}… generated in {t_gen:.1f}s, "
            f"uploaded in {time.monotonic() - t:.1f}s")
        os.unlink(path)
        blobs[label] = {"digest": digest, "size": size}
    manifest, mdigest, _ = bh.push_image(reg, REPO, TAG, [blobs["big"], blobs["mid"]])
    log(f"manifest {REPO}:{TAG} {mdigest} ({len(manifest)} bytes)")
    # A one-layer image (the 512 MiB blob) for containerd's fetch.
    _, lmdigest, lconfig_digest = bh.push_image(reg, REPO, LAYER_TAG, [blobs["big"]])
    log(f"manifest {REPO}:{LAYER_TAG} {lmdigest} (one {BIG_SIZE // MiB} MiB layer)")
    # The same storage served without auth: the manifest phase's upstream
    # (bcrypt on every request would hide the proxies' own cost).
    noauth = h.Registry(ca, name="bench-registry-noauth", extra_config={
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": os.path.join(reg.dir, "data")}}})
    log(f"registry without auth {noauth.host} (same storage) pid {noauth.pid}")
    return {"ca": ca, "reg": reg, "noauth": noauth, "password": password, "blobs": blobs,
            "manifest": manifest, "manifest_digest": mdigest,
            "layer_manifest_digest": lmdigest, "layer_config_digest": lconfig_digest}


def start_pullgate(binary: str, env: dict, work: str) -> h.Pullgate:
    reg = env["reg"]
    creds = os.path.join(work, "docker-config.json")
    if not os.path.exists(creds):
        auth = base64.b64encode(f"bench:{env['password']}".encode()).decode()
        with open(creds, "w") as f:
            json.dump({"auths": {reg.host: {"auth": auth}}}, f)
        os.chmod(creds, 0o600)
    noauth = env["noauth"]
    return h.Pullgate(binary, allow_list=[noauth.host],
                      registries={reg.host: {"caFile": env["ca"].ca_cert},
                                  noauth.host: {"caFile": env["ca"].ca_cert}},
                      extra_config={"credentialsFile": creds})


# --------------------------------------------------------------------------
# phase 3: 512 MiB throughput and CPU seconds per GiB
# --------------------------------------------------------------------------

class Path:
    """One way to the 512 MiB blob. ``service`` is the proxy whose process
    group's CPU time is charged (None for direct); ``fresh`` makes a new
    service for every download (a cold pull-through cache), stopped after."""

    def __init__(self, name: str, url: str = "", extra: Optional[list] = None,
                 service=None, fresh=None, rel: str = "") -> None:
        self.name, self.url, self.extra, self.service = name, url, extra or [], service
        self.fresh, self.rel = fresh, rel

    def begin(self):
        if self.fresh:
            self.service = self.fresh()
            self.url = self.service.url + self.rel
        return self

    def end(self) -> None:
        if self.fresh and self.service is not None:
            self.service.stop()
            self.service = None

    def cpu(self) -> float:
        return bh.group_cpu_seconds(self.service.pid) if self.service is not None else 0.0


def blob_paths(env: dict, pg: h.Pullgate, ngt: bh.Nginx, ngd: bh.Nginx, digest: str,
               with_distribution: bool = True) -> list:
    reg = env["reg"]
    ns = urllib.parse.quote(reg.host, safe="")
    rel = f"/v2/{REPO}/blobs/{digest}"
    paths = [
        Path("direct", reg.url + rel, ["--cacert", env["ca"].ca_cert, "-u", f"bench:{env['password']}"]),
        Path("pullgate", f"{pg.url}{rel}?ns={ns}", [], pg),
        # The same relay without verification (a range answer is never hashed):
        # in the same run, the difference to "pullgate" is what SHA-256 costs.
        Path("pullgate-range", f"{pg.url}{rel}?ns={ns}", ["-H", "Range: bytes=0-"], pg),
        Path("nginx-tuned", ngt.url + rel, [], ngt),
        Path("nginx-default", ngd.url + rel, [], ngd),
    ]
    if with_distribution:
        # distribution's own pull-through cache, cold: a new process with an
        # empty storage dir for every download (it stores while it relays).
        # In front of the registry without auth: its proxy sends credentials
        # only to a Bearer token realm, never as Basic.
        def fresh():
            p = bh.ProxyRegistry(env["noauth"])
            p.start()
            return p
        paths.append(Path("distribution-proxy", extra=["--cacert", env["ca"].ca_cert],
                          fresh=fresh, rel=rel))
    return paths


def phase_throughput(env: dict, paths: list, runs: int, services: list, work: str) -> dict:
    big = env["blobs"]["big"]
    max_time = 180
    # both registries: distribution's proxy pulls from the one without auth
    reg_pgids = (env["reg"].pid, env["noauth"].pid)
    out: dict = {p.name: {"verified": False, "runs_mib_s": [], "times_s": [], "errors": [],
                          "proxy_cpu_s": [], "registry_cpu_s": [], "curl_cpu_s": []}
                 for p in paths}
    log(f"phase 3: verify each path once (sha256 of the bytes received), then "
        f"{runs} interleaved timed runs")
    for p in paths:
        name = p.name
        p.begin()
        try:
            r = bh.curl_hashed(p.url, p.extra, max_time,
                               header_file=os.path.join(work, f"headers-{name}.txt"))
        finally:
            p.end()
        hdr = r.get("headers", {})
        out[name]["response_headers"] = hdr
        hdr_problems = []
        want_status = expect_status(name)
        if want_status == 206 and hdr.get("content-range") != f"bytes 0-{big['size'] - 1}/{big['size']}":
            hdr_problems.append(f"Content-Range {hdr.get('content-range')!r}")
        if hdr.get("content-length") != str(big["size"]):
            hdr_problems.append(f"Content-Length {hdr.get('content-length')!r}")
        if hdr.get("docker-content-digest") != big["digest"]:
            hdr_problems.append(f"Docker-Content-Digest {hdr.get('docker-content-digest')!r}")
        if "transfer-encoding" in hdr:
            hdr_problems.append(f"Transfer-Encoding {hdr['transfer-encoding']!r}")
        if hdr_problems:
            WARNINGS.append(f"{name}: 512 MiB blob response headers: " + ", ".join(hdr_problems))
        ok = (r["rc"] == 0 and r["http_code"] == want_status and r["bytes_hashed"] == big["size"]
              and r["digest"] == big["digest"])
        out[name]["verify"] = {k: r[k] for k in ("rc", "http_code", "bytes_hashed", "digest", "wall")}
        if ok:
            out[name]["verified"] = True
            log(f"  {name:18s} verified: {r['bytes_hashed']} bytes, digest matches "
                f"({mibs(big['size'] / r['wall']):.0f} MiB/s while hashing)")
        else:
            fail(f"{name}: 512 MiB download wrong: curl rc {r['rc']}, HTTP {r['http_code']}, "
                 f"{r['bytes_hashed']} bytes (want {big['size']}), sha256 {r['digest']} "
                 f"(want {big['digest']}); curl: {r['stderr']}")
        check_services(services)
    for i in range(runs):
        for p in paths:
            name = p.name
            if not out[name]["verified"]:
                continue
            p.begin()
            try:
                cpu0 = (p.cpu(), sum(map(bh.group_cpu_seconds, reg_pgids)), children_cpu())
                r = bh.curl_timed(p.url, p.extra, max_time)
                cpu1 = (p.cpu(), sum(map(bh.group_cpu_seconds, reg_pgids)), children_cpu())
            finally:
                p.end()
            if r["rc"] == 0 and r["http_code"] == expect_status(name) and r["size"] == big["size"]:
                out[name]["runs_mib_s"].append(mibs(r["speed"]))
                out[name]["times_s"].append(r["time"])
                if name != "direct":
                    out[name]["proxy_cpu_s"].append(cpu1[0] - cpu0[0])
                    out[name].setdefault("proxy_cores", []).append(
                        (cpu1[0] - cpu0[0]) / r["time"] if r["time"] else 0.0)
                out[name]["registry_cpu_s"].append(cpu1[1] - cpu0[1])
                out[name]["curl_cpu_s"].append(cpu1[2] - cpu0[2])
            else:
                msg = (f"{name}: run {i + 1}: curl rc {r['rc']}, HTTP {r['http_code']}, "
                       f"{r['size']} bytes (want {big['size']}); curl: {r['stderr']}")
                out[name]["errors"].append(msg)
                fail(msg)
        log("  run %d/%d: %s" % (i + 1, runs, ", ".join(
            f"{p.name} {out[p.name]['runs_mib_s'][-1]:.0f}" for p in paths
            if out[p.name]["runs_mib_s"] and len(out[p.name]["runs_mib_s"]) == i + 1)) + " MiB/s")
        check_services(services)
    for name in out:
        v = out[name]["runs_mib_s"]
        out[name]["median_mib_s"] = statistics.median(v) if v else None
        out[name]["min_mib_s"] = min(v) if v else None
        out[name]["max_mib_s"] = max(v) if v else None
        gib = big["size"] / GiB
        for k in ("proxy_cpu_s", "registry_cpu_s", "curl_cpu_s"):
            c = out[name][k]
            out[name][k.replace("_s", "_s_per_gib")] = statistics.median(c) / gib if c else None
            out[name][k.replace("_s", "_s_per_gib") + "_runs"] = [x / gib for x in c]
        cores = out[name].get("proxy_cores")
        out[name]["proxy_cores_median"] = statistics.median(cores) if cores else None
    return out


# --------------------------------------------------------------------------
# phase 4: what users see: containerd fetching a one-layer 512 MiB image
# --------------------------------------------------------------------------

def phase_containerd(env: dict, pg: h.Pullgate, ngt: bh.Nginx, runs: int, services: list,
                     work: str) -> dict:
    """``ctr content fetch`` of REPO:LAYER_TAG (one 512 MiB layer) by a
    containerd in this netns: directly from the registry (TLS, --user),
    through pullgate (the no-bypass hosts.toml) and through tuned nginx (the
    same hosts.toml form); interleaved, the image removed with a synchronous
    GC after every fetch so the next one downloads everything again."""
    reg = env["reg"]
    big = env["blobs"]["big"]
    ref = f"{reg.host}/{REPO}:{LAYER_TAG}"
    log(f"phase 4: containerd 'ctr content fetch' of {ref} (one {big['size'] // MiB} MiB "
        f"layer), {runs} interleaved runs per path")
    ctrd = h.Containerd(namespace="bench")
    services = services + [ctrd]
    dirs = {}
    for name in ("direct", "pullgate", "nginx-tuned"):
        dirs[name] = os.path.join(work, f"hosts-{name}")
        os.makedirs(dirs[name], exist_ok=True)
    h.write_direct_hosts(dirs["direct"], reg)
    h.write_no_bypass_hosts(dirs["pullgate"], pg.url)
    h.write_no_bypass_hosts(dirs["nginx-tuned"], ngt.url)
    paths = [("direct", ["--user", f"bench:{env['password']}"], None),
             ("pullgate", [], pg), ("nginx-tuned", [], ngt)]
    out: dict = {name: {"times_s": [], "mib_s": [], "proxy_cpu_s": [], "containerd_cpu_s": []}
                 for name, _, _ in paths}
    want = {env["layer_manifest_digest"], env["layer_config_digest"], big["digest"]}
    try:
        for i in range(runs):
            for name, extra, svc in paths:
                c0 = (bh.group_cpu_seconds(svc.pid) if svc else 0.0, bh.group_cpu_seconds(ctrd.pid))
                t0 = time.monotonic()
                cp = ctrd.ctr("content", "fetch", "--hosts-dir", dirs[name], "--platform",
                              "linux/amd64", *extra, ref, check=False, timeout=300)
                wall = time.monotonic() - t0
                c1 = (bh.group_cpu_seconds(svc.pid) if svc else 0.0, bh.group_cpu_seconds(ctrd.pid))
                have = ctrd.content_digests()
                if cp.returncode != 0 or not want <= have:
                    fail(f"containerd fetch via {name}, run {i + 1}: rc {cp.returncode}, content "
                         f"missing {sorted(want - have)}; ctr: {(cp.stderr or cp.stdout)[-800:]}")
                else:
                    out[name]["times_s"].append(wall)
                    out[name]["mib_s"].append(mibs(big["size"] / wall))
                    out[name]["proxy_cpu_s"].append(c1[0] - c0[0])
                    out[name]["containerd_cpu_s"].append(c1[1] - c0[1])
                ctrd.ctr("images", "rm", "--sync", ref, check=False)
                left = want & ctrd.content_digests()
                if left:
                    ctrd.ctr("content", "rm", *sorted(left), check=False)
                check_services(services)
            log("  run %d/%d: %s" % (i + 1, runs, ", ".join(
                f"{n} {out[n]['times_s'][-1]:.2f}s" for n, _, _ in paths
                if len(out[n]["times_s"]) == i + 1)))
    finally:
        ctrd.stop()
    for name in out:
        t = out[name]["times_s"]
        out[name]["median_s"] = statistics.median(t) if t else None
        out[name]["median_mib_s"] = mibs(big["size"] / statistics.median(t)) if t else None
        c = out[name]["proxy_cpu_s"]
        out[name]["proxy_cpu_s_per_gib"] = statistics.median(c) / (big["size"] / GiB) if c and name != "direct" else None
    return out


# --------------------------------------------------------------------------
# phase 5: 3 and 8 concurrent 512 MiB downloads (containerd pulls layers in parallel)
# --------------------------------------------------------------------------

def phase_concurrency(paths: list, big: dict, levels: tuple, runs: int, services: list) -> dict:
    log(f"phase 5: {' and '.join(map(str, levels))} concurrent {big['size'] // MiB} MiB "
        f"downloads (one curl --parallel), {runs} run(s) per path")
    out: dict = {}
    for i in range(runs):
        for level in levels:
            for p in paths:
                key = f"{p.name} x{level}"
                o = out.setdefault(key, {"path": p.name, "streams": level, "aggregate_mib_s": [],
                                         "proxy_cpu_s": []})
                cpu0 = p.cpu()
                r = bh.curl_parallel(p.url, p.extra, level, max_time=400)
                cpu1 = p.cpu()
                good = [x for x in r["results"] if x["http_code"] == expect_status(p.name)
                        and x["size"] == big["size"]]
                if len(good) != level:
                    fail(f"{key}: {level - len(good)} of {level} downloads failed (curl rc {r['rc']}: "
                         f"{r['stderr']}; codes {[x['http_code'] for x in r['results']]})")
                    continue
                o["aggregate_mib_s"].append(mibs(r["aggregate_bytes_s"]))
                o["proxy_cpu_s"].append(cpu1 - cpu0)
                log(f"  {key:16s} {mibs(r['aggregate_bytes_s']):6.0f} MiB/s aggregate "
                    f"({r['wall_s']:.1f}s)")
                check_services(services)
    for o in out.values():
        v = o["aggregate_mib_s"]
        o["median_mib_s"] = statistics.median(v) if v else None
        c = o["proxy_cpu_s"]
        o["proxy_cpu_s_per_gib"] = (statistics.median(c) / (o["streams"] * big["size"] / GiB)
                                    if c and o["path"] != "direct" else None)
    return out


class _OnlyModeDone(Exception):
    """--profile or --compare ran: skip the benchmark phases."""


def children_cpu() -> float:
    """utime+stime of this process's reaped children (the curl processes)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------
# phase 6: RSS with 100 concurrent streams, then 1000 idle connections
# --------------------------------------------------------------------------

def phase_rss(binary: str, env: dict, work: str, services: list) -> dict:
    mid = env["blobs"]["mid"]
    log(f"phase 6: fresh pullgate, {CONCURRENT_STREAMS} concurrent downloads of the "
        f"{mid['size'] // MiB} MiB blob")
    pg = start_pullgate(binary, env, work)
    services = services + [pg]
    time.sleep(0.3)
    res: dict = {"pid": pg.pid,
                 "baseline_rss_kib": pg.rss_kib(), "baseline_hwm_kib": pg.peak_rss_kib()}
    ns = urllib.parse.quote(env["reg"].host, safe="")
    # one small request so the Basic challenge has been seen (as in steady state)
    warm = pg.get(f"/v2/{REPO}/manifests/{TAG}", method="HEAD", ns=env["reg"].host,
                  headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT})
    if warm.status != 200:
        fail(f"fresh pullgate: manifest HEAD answered {warm.status}")
    res["after_warmup_rss_kib"] = pg.rss_kib()
    url = f"{pg.url}/v2/{REPO}/blobs/{mid['digest']}?ns={ns}"
    outdir = h.make_tempdir("pgbench-streams-", parent=work)
    # One curl running all transfers at once (--parallel-immediate: a new
    # connection each), so the streams really are concurrent: 100 separate
    # curl processes start one by one on a busy machine, and the first ones
    # finish before the last ones connect.
    targets = []
    argv = bh.CURL_BASE + ["--max-time", "150", "--parallel", "--parallel-immediate",
                           "--parallel-max", str(CONCURRENT_STREAMS), "-w",
                           "%{http_code} %{size_download} %{speed_download} %{time_total} "
                           "%{filename_effective}\\n"]
    for i in range(CONCURRENT_STREAMS):
        targets.append(os.path.join(outdir, f"s{i}.bin") if i % (CONCURRENT_STREAMS // HASHED_STREAMS) == 0
                       else "/dev/null")
        argv += ["-o", targets[-1], url]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=h.clean_env())
    rss_samples = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            rss_samples.append(pg.rss_kib())
        except (OSError, KeyError):
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    try:
        so, se = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        so, se = proc.communicate()
    wall = time.monotonic() - t0
    # One -w line per finished transfer, in completion order; the file name
    # tells the hashed ones apart. A transfer without a line counts as failed.
    results = []
    for line in so.decode().splitlines():
        fields = line.split(" ", 4)
        if len(fields) == 5:
            results.append((fields[4], bh._curl_result(0, " ".join(fields[:4]), "")))
    missing_hashed = [t for t in targets if t != "/dev/null" and t not in {r[0] for r in results}]
    while len(results) < CONCURRENT_STREAMS:
        target = missing_hashed.pop() if missing_hashed else "/dev/null"
        results.append((target, bh._curl_result(proc.returncode or 1, "", se.decode()[-200:])))
    pg.check_alive()
    res["peak_hwm_kib"] = pg.peak_rss_kib()
    res["max_sampled_rss_kib"] = max(rss_samples) if rss_samples else None
    res["end_rss_kib"] = pg.rss_kib()
    ok = [r for _, r in results if r["rc"] == 0 and r["http_code"] == 200 and r["size"] == mid["size"]]
    bad = [r for _, r in results if r not in ok]
    res["streams"] = CONCURRENT_STREAMS
    res["succeeded"] = len(ok)
    res["wall_s"] = wall
    res["aggregate_mib_s"] = mibs(sum(r["size"] for _, r in results) / wall) if wall > 0 else None
    res["slowest_s"] = max((r["time"] for _, r in results), default=None)
    if bad:
        kinds: dict = {}
        for r in bad:
            k = f"rc {r['rc']} HTTP {r['http_code']} size {r['size']} ({r['stderr'][:120]})"
            kinds[k] = kinds.get(k, 0) + 1
        res["failures"] = kinds
        fail(f"{len(bad)} of {CONCURRENT_STREAMS} concurrent 64 MiB downloads failed: " +
             "; ".join(f"{n}x {k}" for k, n in kinds.items()))
    hashed = []
    for target, r in results:
        if target == "/dev/null":
            continue
        digest = bh.file_digest(target) if os.path.exists(target) else None
        hashed.append(digest == mid["digest"])
        if digest != mid["digest"]:
            fail(f"concurrent download {os.path.basename(target)}: sha256 {digest}, "
                 f"want {mid['digest']} (curl rc {r['rc']}, {r['size']} bytes)")
        try:
            os.unlink(target)
        except OSError:
            pass
    res["hashed_ok"] = f"{sum(hashed)}/{len(hashed)}"
    log(f"  {len(ok)}/{CONCURRENT_STREAMS} ok in {wall:.1f}s, hashed {res['hashed_ok']} ok, "
        f"baseline RSS {res['baseline_rss_kib'] / 1024:.1f} MiB, "
        f"peak VmHWM {res['peak_hwm_kib'] / 1024:.1f} MiB")
    res["decisions"] = summarize_decisions(pg)
    res["stderr_findings"] = stderr_findings(pg)
    pg.stop()
    return res


def phase_idle(binary: str, env: dict, work: str) -> dict:
    """A fresh pullgate: IDLE_CONNECTIONS keep-alive connections that each
    asked for /v2/ once (answered by pullgate itself, no upstream) and then
    sit idle, as containerd's do; RSS growth per connection."""
    log(f"phase 6b: fresh pullgate, {IDLE_CONNECTIONS} idle keep-alive connections")
    pg = start_pullgate(binary, env, work)
    res: dict = {}
    try:
        warm = pg.get("/v2/")
        if warm.status != 200:
            fail(f"fresh pullgate: /v2/ answered {warm.status}")
        time.sleep(0.3)
        before = pg.rss_kib()
        request = (f"GET /v2/ HTTP/1.1\r\nHost: {pg.listen}\r\n\r\n").encode()
        try:
            socks = bh.open_idle_connections(pg.port, IDLE_CONNECTIONS, request)
        except (OSError, RuntimeError, TimeoutError) as exc:
            fail(f"{IDLE_CONNECTIONS} idle connections: {exc}")
            return res
        try:
            time.sleep(0.5)
            pg.check_alive()
            with_idle = pg.rss_kib()
            res = {"connections": len(socks), "rss_before_kib": before,
                   "rss_with_idle_kib": with_idle,
                   "kib_per_connection": (with_idle - before) / len(socks),
                   "peak_hwm_kib": pg.peak_rss_kib()}
        finally:
            for sock in socks:
                sock.close()
        log(f"  {len(socks)} idle connections: RSS {before / 1024:.1f} -> {with_idle / 1024:.1f} MiB, "
            f"{res['kib_per_connection']:.1f} KiB per connection")
    finally:
        pg.stop()
    return res


# --------------------------------------------------------------------------
# phase 7: manifest HEAD/GET under wrk and ab
# --------------------------------------------------------------------------

def phase_manifest(env: dict, pg: h.Pullgate, ngt: bh.Nginx, work: str, duration: int,
                   services: list) -> dict:
    reg = env["noauth"]
    ns = urllib.parse.quote(reg.host, safe="")
    rel = f"/v2/{REPO}/manifests/{TAG}"
    # The third element: the process group whose CPU time is charged to the
    # target (the proxy's; the registry's own for "direct").
    targets = [
        ("pullgate", f"{pg.url}{rel}?ns={ns}", {}, pg.pid),
        ("nginx-tuned", ngt.url + rel, {}, ngt.pid),
        ("direct", reg.url + rel, {}, reg.pid),
    ]
    log(f"phase 7: manifest HEAD (ab -i -k -c32 -t{duration}) and GET "
        f"(wrk -t2 -c32 -d{duration}s --latency)")
    manifest, mdigest = env["manifest"], env["manifest_digest"]
    ctx = env["ca"].ssl_context()
    out: dict = {}
    valid = {}
    for name, url, hdrs, _ in targets:
        for method in ("HEAD", "GET"):
            r = h.http_request(method, url, headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT, **hdrs},
                               ssl_context=ctx)
            problems = []
            if r.status != 200:
                problems.append(f"status {r.status}")
            if r.header("Docker-Content-Digest") != mdigest:
                problems.append(f"Docker-Content-Digest {r.header('Docker-Content-Digest')}")
            if r.header("Content-Length") != str(len(manifest)):
                problems.append(f"Content-Length {r.header('Content-Length')} (want {len(manifest)})")
            if (r.header("Content-Type") or "").split(";")[0] != h.OCI_MANIFEST:
                problems.append(f"Content-Type {r.header('Content-Type')}")
            if method == "GET" and r.body != manifest:
                problems.append(f"body differs ({len(r.body)} bytes)")
            if method == "HEAD" and r.body:
                problems.append(f"HEAD had a {len(r.body)}-byte body")
            if r.header("WWW-Authenticate"):
                problems.append("WWW-Authenticate passed through")
            valid[(name, method)] = not problems
            if problems:
                fail(f"{name} manifest {method}: " + ", ".join(problems))
    for method in ("HEAD", "GET"):
        for name, url, hdrs, pgid in targets:
            key = f"{name} {method}"
            if not valid[(name, method)]:
                out[key] = {"skipped": "failed the correctness pre-check"}
                continue
            accept = {"Accept": h.CONTAINERD_MANIFEST_ACCEPT}
            cpu0 = bh.group_cpu_seconds(pgid)
            if method == "HEAD":
                # wrk 4.1 cannot measure HEAD (0 requests complete: its parser
                # waits for the Content-Length body); ApacheBench -i can
                r = bh.run_ab_head(url, accept, duration)
            else:
                script = bh.write_wrk_script(os.path.join(work, f"wrk-{name}-{method}.lua"),
                                             method, {**accept, **hdrs})
                r = bh.run_wrk(url, script, duration)
            # CPU of the target's own processes per request: what the proxy
            # takes from the two cores it shares with the registry and the client.
            r["cpu_s"] = bh.group_cpu_seconds(pgid) - cpu0
            r["cpu_us_per_request"] = r["cpu_s"] / r["requests"] * 1e6 if r.get("requests") else None
            out[key] = r
            errs = bh.errors_total(r)
            log(f"  {key:18s} {r['tool']:3s} {r['rps'] or 0:9.1f} req/s  p99 {fmt_ms(r['p99_ms'])}  "
                f"CPU {fmt(r['cpu_us_per_request'], '.0f')} us/request  "
                f"requests {r['requests']}  non-2xx {r['non2xx']}  errors {r['socket_errors']}")
            if not r["rps"] or r["rc"] != 0:
                fail(f"{r['tool']} against {key} produced no result (rc {r['rc']}):\n{r['raw'][-1500:]}")
            elif r["non2xx"] or errs:
                fail(f"{r['tool']} against {key}: {r['non2xx']} non-2xx responses, errors "
                     f"{r['socket_errors']} out of {r['requests']} requests")
            check_services(services)
    # Added latency, without queueing: one connection, one request at a time
    # (with 32 the registry's own queue makes every p99 ~150 ms and hides
    # what a proxy adds).
    for name, url, hdrs, pgid in targets:
        key = f"{name} GET c1"
        if not valid[(name, "GET")]:
            continue
        script = bh.write_wrk_script(os.path.join(work, f"wrk-{name}-GET.lua"), "GET",
                                     {"Accept": h.CONTAINERD_MANIFEST_ACCEPT, **hdrs})
        cpu0 = bh.group_cpu_seconds(pgid)
        r = bh.run_wrk(url, script, duration, threads=1, connections=1)
        r["cpu_s"] = bh.group_cpu_seconds(pgid) - cpu0
        r["cpu_us_per_request"] = r["cpu_s"] / r["requests"] * 1e6 if r.get("requests") else None
        out[key] = r
        log(f"  {key:18s} {r['tool']:3s} {r['rps'] or 0:9.1f} req/s  p50 {fmt_ms(r['p50_ms'])}  "
            f"p99 {fmt_ms(r['p99_ms'])}  CPU {fmt(r['cpu_us_per_request'], '.0f')} us/request")
        if not r["rps"] or r["rc"] != 0 or r["non2xx"] or bh.errors_total(r):
            fail(f"wrk -c1 against {key}: rc {r['rc']}, non-2xx {r['non2xx']}, errors {r['socket_errors']}")
        check_services(services)
    return out


def phase_manifest_compare(env: dict, pg: h.Pullgate, others: list, work: str, duration: int, runs: int,
                           services: list) -> dict:
    """Before/after for the request path: manifest GETs (wrk, 32
    connections) through --pullgate and each other build, interleaved over
    ``runs`` rounds; req/s and the build's CPU per request, medians."""
    reg = env["noauth"]
    ns = urllib.parse.quote(reg.host, safe="")
    rel = f"/v2/{REPO}/manifests/{TAG}?ns={ns}"
    builds = [("pullgate", pg)]
    for i, other in enumerate(others, 1):
        other_pg = start_pullgate(other, env, work)
        services.append(other_pg)
        builds.append((f"compare{i}", other_pg))
        log(f"compare{i}: {other} pid {other_pg.pid}")
    script = bh.write_wrk_script(os.path.join(work, "wrk-compare-GET.lua"), "GET",
                                 {"Accept": h.CONTAINERD_MANIFEST_ACCEPT})
    out: dict = {name: {"rps": [], "cpu_us_per_request": [], "p99_ms": []} for name, _ in builds}
    for r in range(runs):
        for name, b in builds:
            cpu0 = bh.group_cpu_seconds(b.pid)
            w = bh.run_wrk(f"{b.url}{rel}", script, duration)
            cpu = bh.group_cpu_seconds(b.pid) - cpu0
            if not w["rps"] or w["non2xx"] or bh.errors_total(w):
                fail(f"{name} manifest GET: rps {w['rps']}, non-2xx {w['non2xx']}, errors {w['socket_errors']}")
                continue
            out[name]["rps"].append(w["rps"])
            out[name]["cpu_us_per_request"].append(cpu / w["requests"] * 1e6)
            out[name]["p99_ms"].append(w["p99_ms"])
        log(f"  round {r + 1}/{runs}: " + ", ".join(
            f"{name} {out[name]['rps'][-1]:.0f} req/s {out[name]['cpu_us_per_request'][-1]:.0f} us/req"
            for name, _ in builds if out[name]["rps"]))
        check_services(services)
    for name, b in builds:
        o = out[name]
        print(f"  {name:10s} {b.binary if hasattr(b, 'binary') else ''}")
        print(f"    req/s median {fmt(statistics.median(o['rps']) if o['rps'] else None, '.0f')}  "
              f"CPU us/request median {fmt(statistics.median(o['cpu_us_per_request']) if o['rps'] else None, '.0f')}"
              f"  runs " + " ".join(f"{v:.0f}" for v in o["cpu_us_per_request"]))
    return out


# --------------------------------------------------------------------------
# --profile: where the CPU goes (perf, strace -c, the TLS suite)
# --------------------------------------------------------------------------

_CRYPTO_KINDS = (("sha256rnds2", "SHA-256 (SHA-NI block function)"),
                 ("sha256msg", "SHA-256 (SHA-NI block function)"),
                 ("aesdec", "AES-GCM decrypt (AES-NI)"), ("aesenc", "AES-GCM (AES-NI + carry-less multiply, stitched)"),
                 ("pclmul", "GHASH (carry-less multiply)"))


def _libcrypto_kind(path: str, addr: int, cache: dict) -> str:
    """What an unexported libcrypto address is (Debian ships libcrypto
    without the symbols of its assembler routines): read the code around it
    and name it by the instructions there."""
    key = addr >> 8
    if key not in cache:
        cp = subprocess.run(["objdump", "-d", path, f"--start-address={addr - 96:#x}",
                             f"--stop-address={addr + 96:#x}"], capture_output=True, text=True)
        text = cp.stdout
        cache[key] = next((label for insn, label in _CRYPTO_KINDS if insn in text), "libcrypto, other")
    return cache[key]


def perf_breakdown(data: str) -> dict:
    """Shares of cpu-clock samples by DSO and by symbol, with libcrypto's
    anonymous addresses named by what their code does."""
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort",
                          "dso,sym", "--percent-limit", "0", "-g", "none", "-v"],
                         capture_output=True, text=True, timeout=300)
    by_dso: dict = {}
    by_sym: dict = {}
    cache: dict = {}
    for ln in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+0x([0-9a-f]+)\s+\S+\s+\[(.)\]\s+(.+?)\s*$", ln)
        if not m:
            continue
        pct, dso, addr, sym = float(m.group(1)), m.group(2), int(m.group(3), 16), m.group(5)
        dso_name = os.path.basename(dso)
        by_dso[dso_name] = by_dso.get(dso_name, 0.0) + pct
        if "libcrypto" in dso_name and re.fullmatch(r"0x[0-9a-f]+", sym.split()[0]) and dso.startswith("/"):
            sym = _libcrypto_kind(dso, addr, cache)
        else:
            sym = re.sub(r"(\s+-)+\s*$", "", sym).strip() or "?"
        by_sym[sym] = by_sym.get(sym, 0.0) + pct
    top = sorted(by_sym.items(), key=lambda kv: -kv[1])[:20]
    return {"by_dso": dict(sorted(by_dso.items(), key=lambda kv: -kv[1])),
            "top_symbols": [(k, round(v, 2)) for k, v in top]}


def phase_profile(env: dict, pg: h.Pullgate, ngt: bh.Nginx, work: str) -> dict:
    """One 512 MiB download per mode (pullgate verified, pullgate unverified
    with ``Range: bytes=0-``, and tuned nginx: master and workers) under
    ``perf record -g -e cpu-clock -p PIDS`` (a software event: this VM has
    no hardware counters), then again under ``strace -c -f -p PID...``
    (syscalls per GiB); the TLS suite the upstream
    connection negotiates, as OpenSSL's default client offer (what pullgate
    sends: it sets no suites of its own) meets the registry's choice."""
    reg = env["reg"]
    big = env["blobs"]["big"]
    ns = urllib.parse.quote(reg.host, safe="")
    url = f"{pg.url}/v2/{REPO}/blobs/{big['digest']}?ns={ns}"
    gib = big["size"] / GiB
    out: dict = {}
    s_client = subprocess.run(["openssl", "s_client", "-connect", reg.host, "-CAfile", env["ca"].ca_cert,
                               "-brief"], input="", capture_output=True, text=True, timeout=30,
                              env=h.clean_env())
    m = re.search(r"Ciphersuite: (\S+)", s_client.stdout + s_client.stderr)
    p = re.search(r"Protocol version: (\S+)", s_client.stdout + s_client.stderr)
    out["tls"] = {"protocol": p.group(1) if p else None, "suite": m.group(1) if m else None}
    log(f"profile: upstream TLS {out['tls']['protocol']} {out['tls']['suite']}")
    modes = (("pullgate verified", url, [], pg.pid),
             ("pullgate unverified", url, ["-H", "Range: bytes=0-"], pg.pid),
             ("nginx-tuned", ngt.url + f"/v2/{REPO}/blobs/{big['digest']}", [], ngt.pid))
    for mode, url, extra, pgid in modes:
        pids = ",".join(map(str, bh.group_pids(pgid)))
        slug = mode.replace(" ", "-")
        data = os.path.join(work, f"perf-{slug}.data")
        perf = subprocess.Popen(["perf", "record", "-g", "-e", "cpu-clock", "-F", "999", "-o", data,
                                 "-p", pids], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        time.sleep(1.0)
        c0 = bh.group_cpu_seconds(pgid)
        r = bh.curl_timed(url, extra, 300)
        c1 = bh.group_cpu_seconds(pgid)
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
        if r["size"] != big["size"]:
            fail(f"profile {mode}: {r['size']} bytes, curl {r['stderr']}")
        breakdown = perf_breakdown(data)
        # strace -c: syscalls per GiB in a second download
        st_out = os.path.join(work, f"strace-{slug}.txt")
        st = subprocess.Popen(["strace", "-c", "-f", "-o", st_out]
                              + [a for pid in pids.split(",") for a in ("-p", pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        time.sleep(1.0)
        r2 = bh.curl_timed(url, extra, 600)
        st.send_signal(signal.SIGINT)
        st.wait(60)
        calls = {}
        try:
            with open(st_out) as f:
                for ln in f:
                    cols = ln.split()
                    if len(cols) >= 5 and cols[0][0].isdigit() and cols[-1] != "total":
                        calls[cols[-1]] = int(cols[3])
        except OSError:
            pass
        per_gib = {k: round(v / gib) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}
        out[mode] = {"cpu_s_per_gib": (c1 - c0) / gib, "mib_s": mibs(r["speed"]),
                     "perf": breakdown, "syscalls_per_gib": per_gib,
                     "strace_run_bytes": r2["size"]}
        log(f"profile {mode}: {(c1 - c0) / gib:.2f} CPU-s/GiB, {mibs(r['speed']):.0f} MiB/s under perf")
        print("    by DSO: " + ", ".join(f"{k} {v:.1f}%" for k, v in breakdown["by_dso"].items()))
        for sym, pct in breakdown["top_symbols"]:
            print(f"    {pct:6.2f}%  {sym}")
        print("    syscalls per GiB: " + ", ".join(f"{k} {v}" for k, v in per_gib.items()))
    return out


# --------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------

def check_services(services: list) -> None:
    for s in services:
        if not s.alive():
            msg = f"{s.name} (pid {s.pid}) died, exit {s.proc.returncode}; stderr:\n{s.stderr_text(3000)}"
            fail(msg)
            raise SystemExit(finish_early())


def finish_early() -> int:
    print("\nbenchmark aborted:", *FAILURES, sep="\n  ")
    return 1


def summarize_decisions(pg: h.Pullgate) -> dict:
    """Counts of decision-log lines by decision/reason/status; the first few
    that are not allow+2xx."""
    counts: dict = {}
    odd = []
    for d in pg.decisions():
        k = f"{d.get('method')} {d.get('kind')} {d.get('decision')}/{d.get('reason')}/{d.get('status')}"
        counts[k] = counts.get(k, 0) + 1
        if d.get("decision") != "allow" or not (200 <= int(d.get("status") or 0) < 300):
            if len(odd) < 5:
                odd.append(d)
    return {"counts": counts, "not_ok_examples": odd}


def stderr_findings(pg: h.Pullgate) -> list:
    """pullgate diagnostics at warning level or above (first 10)."""
    found = []
    for line in pg.stderr_text(200000).splitlines():
        low = line.lower()
        if any(w in low for w in ("[warning]", "[warn]", "[error]", "[critical]", "[err]")):
            found.append(line[:300])
    return found[:10] + ([f"... {len(found) - 10} more"] if len(found) > 10 else [])


def fmt_ms(v) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f}us" if v < 1 else f"{v:.2f}ms"


def fmtx(v) -> str:
    """A ratio as 0.00x, or n/a."""
    return "n/a" if v is None else f"{v:.2f}x"


def fmt(v, spec: str = ".0f") -> str:
    return "n/a" if v is None else format(v, spec)


# --------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------

def ratio(a, b):
    return a / b if a and b else None


def print_manifest(mf: dict, seconds: int) -> None:
    print(f"\nmanifest {REPO}:{TAG} from a registry WITHOUT auth, 32 connections, "
          f"{seconds}s each: HEAD with ab -i -k (wrk cannot do HEAD), GET with "
          f"wrk -t2 --latency; direct = the registry itself over TLS; CPU = utime+stime of the "
          f"target's processes (the registry's own for direct) per request")
    print(f"  {'target':20s} {'tool':4s} {'req/s':>8s} {'p50':>9s} {'p99':>9s} {'CPU us/req':>10s} "
          f"{'requests':>8s} {'non-2xx':>7s}  errors")
    for key, r in mf.items():
        if "skipped" in r:
            print(f"  {key:20s} skipped: {r['skipped']}")
            continue
        se = ", ".join(f"{k} {v}" for k, v in r["socket_errors"].items() if v) or "0"
        print(f"  {key:20s} {r['tool']:4s} {fmt(r['rps'], '.1f'):>8s} {fmt_ms(r['p50_ms']):>9s} "
              f"{fmt_ms(r['p99_ms']):>9s} {fmt(r.get('cpu_us_per_request'), '.0f'):>10s} "
              f"{fmt(r['requests'], 'd'):>8s} {r['non2xx']:>7d}  {se}")


def summarize(res: dict) -> list:
    """Print the tables and targets; returns the target list."""
    tp, rss, mf = res.get("throughput", {}), res.get("rss", {}), res.get("manifest", {})
    sha, ct, cc, idle = res.get("sha256", {}), res.get("containerd", {}), res.get("concurrency", {}), res.get("idle", {})
    print()
    print("=" * 78)
    print(f"pullgate benchmark  ({res['mode']}, {res['runs']} runs/path, "
          f"wrk {res['wrk_seconds']}s, {os.cpu_count()} CPUs)")
    print("=" * 78)
    ow = res.get("other_work")
    if ow:
        print(f"\nCPU over the run ({ow['wall_s']} s): the machine {ow['machine_busy_cores']} cores busy, this "
              f"benchmark's processes {ow['benchmark_cores']}, other work {ow['other_cores']}")
    sha_gib = sha.get("cpu_s_per_gib")
    if sha:
        print(f"\nSHA-256 on this machine (openssl speed -evp sha256 -bytes 262144, same run): "
              f"{fmt(sha_gib, '.2f')} CPU-s/GiB user ({fmt(sha.get('mib_per_cpu_s'))} MiB per CPU-s)")
    names = ("direct", "pullgate", "pullgate-range", "nginx-tuned", "nginx-default", "distribution-proxy")
    print(f"\n512 MiB blob, curl --http1.1 (MiB/s, curl speed_download; median of {res['runs']}); "
          f"CPU-s/GiB = utime+stime of the proxy's processes (all nginx workers) per GiB relayed")
    print(f"  {'path':18s} {'median':>7s} {'min':>6s} {'max':>6s}  {'sha256':7s} "
          f"{'CPU s/GiB: proxy':>16s} {'registry':>8s} {'curl':>5s} {'proxy cores':>11s}  runs")
    for name in names:
        t = tp.get(name)
        if not t:
            continue
        print(f"  {name:18s} {fmt(t['median_mib_s']):>7s} {fmt(t['min_mib_s']):>6s} "
              f"{fmt(t['max_mib_s']):>6s}  {'ok' if t['verified'] else 'WRONG':7s} "
              f"{fmt(t.get('proxy_cpu_s_per_gib'), '.2f') if name != 'direct' else '-':>16s} "
              f"{fmt(t.get('registry_cpu_s_per_gib'), '.2f'):>8s} "
              f"{fmt(t.get('curl_cpu_s_per_gib'), '.2f'):>5s} "
              f"{fmt(t.get('proxy_cores_median'), '.2f') if name != 'direct' else '-':>11s}  "
              + " ".join(f"{v:.0f}" for v in t["runs_mib_s"]))
    med = {n: (tp.get(n) or {}).get("median_mib_s") for n in names}
    cpu = {n: (tp.get(n) or {}).get("proxy_cpu_s_per_gib") for n in names}
    r_range_tuned = ratio(med["pullgate-range"], med["nginx-tuned"])
    r_dist = ratio(med["pullgate"], med["distribution-proxy"])
    print(f"  ratios: pullgate/direct {fmtx(ratio(med['pullgate'], med['direct']))}, "
          f"pullgate-range/direct {fmtx(ratio(med['pullgate-range'], med['direct']))}, "
          f"pullgate-range/nginx-tuned {fmtx(r_range_tuned)}, "
          f"pullgate/nginx-tuned {fmtx(ratio(med['pullgate'], med['nginx-tuned']))}, "
          f"pullgate/distribution-proxy {fmtx(r_dist)}")
    print("  (pullgate-range = the same relay with Range: bytes=0-, never hashed)")
    verified_budget = cpu["nginx-tuned"] + sha_gib if cpu["nginx-tuned"] and sha_gib else None
    print(f"  CPU-s/GiB: pullgate {fmt(cpu['pullgate'], '.2f')} (verified), pullgate-range "
          f"{fmt(cpu['pullgate-range'], '.2f')}, nginx-tuned {fmt(cpu['nginx-tuned'], '.2f')}, "
          f"nginx-default {fmt(cpu['nginx-default'], '.2f')}, distribution-proxy "
          f"{fmt(cpu['distribution-proxy'], '.2f')}; SHA-256 alone {fmt(sha_gib, '.2f')}; "
          f"verification in the relay costs {fmt(cpu['pullgate'] - cpu['pullgate-range'] if cpu['pullgate'] and cpu['pullgate-range'] else None, '.2f')}")
    res["ratios"] = {"pullgate/direct": ratio(med["pullgate"], med["direct"]),
                     "pullgate-range/nginx-tuned": r_range_tuned,
                     "pullgate/distribution-proxy": r_dist,
                     "cpu pullgate-range/nginx-tuned": ratio(cpu["pullgate-range"], cpu["nginx-tuned"]),
                     "cpu pullgate/(nginx-tuned+sha256)": ratio(cpu["pullgate"], verified_budget)}
    r_ctr = None
    if ct:
        print(f"\ncontainerd 1.6 'ctr content fetch' of a one-layer image (512 MiB layer), "
              f"seconds, median of interleaved runs")
        for name in ("direct", "pullgate", "nginx-tuned"):
            c = ct.get(name) or {}
            print(f"  {name:18s} {fmt(c.get('median_s'), '.2f'):>6s}s {fmt(c.get('median_mib_s')):>5s} MiB/s  "
                  f"proxy CPU-s/GiB {fmt(c.get('proxy_cpu_s_per_gib'), '.2f'):>5s}  runs "
                  + " ".join(f"{v:.2f}" for v in c.get("times_s", [])))
        d, p, n = ((ct.get(x) or {}).get("median_s") for x in ("direct", "pullgate", "nginx-tuned"))
        r_ctr = ratio(d, p)
        print(f"  speed ratios: pullgate/direct {fmtx(r_ctr)}, nginx-tuned/direct {fmtx(ratio(d, n))}")
        res["ratios"]["containerd pullgate/direct"] = r_ctr
    if cc:
        print("\nconcurrent 512 MiB downloads, aggregate MiB/s (median)")
        levels = sorted({o["streams"] for o in cc.values()})
        for level in levels:
            row = {o["path"]: o for o in cc.values() if o["streams"] == level}
            print(f"  x{level}: " + ", ".join(
                f"{pname} {fmt(o['median_mib_s'])} (CPU-s/GiB {fmt(o['proxy_cpu_s_per_gib'], '.2f')})"
                for pname, o in row.items()) +
                f"; pullgate/nginx-tuned {fmtx(ratio((row.get('pullgate') or {}).get('median_mib_s'), (row.get('nginx-tuned') or {}).get('median_mib_s')))}"
                f", pullgate/direct {fmtx(ratio((row.get('pullgate') or {}).get('median_mib_s'), (row.get('direct') or {}).get('median_mib_s')))}")
    if rss:
        print(f"\npullgate memory, fresh process, {rss.get('streams')} concurrent 64 MiB downloads")
        print(f"  baseline RSS {rss['baseline_rss_kib'] / 1024:.1f} MiB (after one request "
              f"{rss['after_warmup_rss_kib'] / 1024:.1f} MiB)  peak VmHWM "
              f"{rss['peak_hwm_kib'] / 1024:.1f} MiB  max sampled RSS "
              f"{fmt((rss.get('max_sampled_rss_kib') or 0) / 1024, '.1f')} MiB  end RSS "
              f"{rss['end_rss_kib'] / 1024:.1f} MiB")
        per = (rss["peak_hwm_kib"] - rss["after_warmup_rss_kib"]) / max(1, rss["streams"])
        print(f"  growth over the warm process: {per:.0f} KiB per stream")
        print(f"  {rss['succeeded']}/{rss['streams']} downloads ok, hashed {rss['hashed_ok']} ok, "
              f"wall {rss['wall_s']:.1f}s, aggregate {fmt(rss['aggregate_mib_s'])} MiB/s, "
              f"slowest stream {fmt(rss['slowest_s'], '.1f')}s")
    if idle:
        print(f"  {idle['connections']} idle keep-alive connections (fresh process): RSS "
              f"{idle['rss_before_kib'] / 1024:.1f} -> {idle['rss_with_idle_kib'] / 1024:.1f} MiB, "
              f"{idle['kib_per_connection']:.1f} KiB per connection")
    if mf:
        print_manifest(mf, res["wrk_seconds"])
    # targets
    targets = []

    def target(name, ok, detail):
        targets.append({"target": name, "pass": bool(ok), "detail": detail})

    r_cpu_u = ratio(cpu["pullgate-range"], cpu["nginx-tuned"])
    target("CPU: pullgate unverified CPU-s/GiB <= 0.9x nginx tuned",
           r_cpu_u is not None and r_cpu_u <= 0.9,
           f"{fmt(cpu['pullgate-range'], '.2f')} vs {fmt(cpu['nginx-tuned'], '.2f')} ({fmtx(r_cpu_u)})")
    target("throughput: pullgate unverified >= 1.1x nginx tuned",
           r_range_tuned is not None and r_range_tuned >= 1.1,
           f"{fmt(med['pullgate-range'])} vs {fmt(med['nginx-tuned'])} MiB/s ({fmtx(r_range_tuned)})")
    target("CPU: pullgate verified CPU-s/GiB <= nginx tuned + SHA-256",
           cpu["pullgate"] is not None and verified_budget is not None and cpu["pullgate"] <= verified_budget,
           f"{fmt(cpu['pullgate'], '.2f')} vs {fmt(cpu['nginx-tuned'], '.2f')} + {fmt(sha_gib, '.2f')} "
           f"= {fmt(verified_budget, '.2f')}")
    if ct:
        target("containerd fetch: through pullgate >= 0.95x direct",
               r_ctr is not None and r_ctr >= 0.95, fmtx(r_ctr))
    target("throughput: pullgate (verified) >= 2.0x distribution proxy mode, cold",
           r_dist is not None and r_dist >= 2.0,
           f"{fmt(med['pullgate'])} vs {fmt(med['distribution-proxy'])} MiB/s ({fmtx(r_dist)}); "
           f"a third core for the hashing is not measurable on this machine")
    if rss:
        target(f"memory: peak RSS <= 32 MiB with {rss['streams']} streams",
               rss["peak_hwm_kib"] <= RSS_TARGET_KIB and rss["succeeded"] == rss["streams"],
               f"{rss['peak_hwm_kib'] / 1024:.1f} MiB")
    if idle:
        target(f"memory: <= {IDLE_TARGET_KIB} KiB per idle connection at {idle['connections']}",
               idle["kib_per_connection"] <= IDLE_TARGET_KIB, f"{idle['kib_per_connection']:.1f} KiB")
    for method in ("HEAD", "GET"):
        p, n, d = (mf.get(f"{x} {method}", {}) for x in ("pullgate", "nginx-tuned", "direct"))
        prps, nrps = p.get("rps"), n.get("rps")
        target(f"manifest {method}: pullgate req/s >= nginx tuned (upstream without auth)",
               bool(prps and nrps and prps >= nrps and not p.get("non2xx")),
               f"{fmt(prps)} vs {fmt(nrps)} req/s ({fmtx(ratio(prps, nrps))}); registry alone {fmt(d.get('rps'))}; "
               f"CPU per request {fmt(p.get('cpu_us_per_request'), '.0f')} vs {fmt(n.get('cpu_us_per_request'), '.0f')} us "
               f"(the registry's own {fmt(d.get('cpu_us_per_request'), '.0f')})")
    # p99 added: one connection (no queueing in the registry), GET (wrk
    # resolves microseconds; ab only milliseconds).
    p, n, d = (mf.get(f"{t} GET c1", {}) for t in ("pullgate", "nginx-tuned", "direct"))
    added = (p["p99_ms"] - d["p99_ms"]) if p.get("p99_ms") is not None and d.get("p99_ms") is not None else None
    target("manifest GET, one connection: p99 added over the registry alone < 1 ms",
           added is not None and added < 1.0,
           f"p99 {fmt_ms(p.get('p99_ms'))} vs {fmt_ms(d.get('p99_ms'))} ({fmt(added, '+.2f')} ms; "
           f"nginx tuned {fmt_ms(n.get('p99_ms'))})")
    print("\ntargets (reported, not asserted)")
    for t in targets:
        print(f"  [{'PASS' if t['pass'] else 'FAIL'}] {t['target']}: {t['detail']}")
    print("\ncorrectness: " + ("all checks passed" if not FAILURES else
                                f"{len(FAILURES)} FAILED"))
    for f_ in FAILURES:
        print("  - " + f_)
    pg_dec = res.get("pullgate_decisions") or {}
    if pg_dec:
        print("\npullgate decision log (throughput+manifest instance): " +
              ", ".join(f"{k}: {v}" for k, v in sorted(pg_dec.get("counts", {}).items())))
    if rss.get("decisions"):
        print("pullgate decision log (fresh RSS instance): " +
              ", ".join(f"{k}: {v}" for k, v in sorted(rss["decisions"]["counts"].items())))
    findings = (res.get("pullgate_stderr") or []) + (rss.get("stderr_findings") or [])
    if findings:
        print("pullgate warnings/errors on stderr:")
        for line in findings:
            print("  " + line)
    for w in WARNINGS:
        print("warning: " + w)
    return targets


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pullgate", required=True, help="path to the pullgate binary")
    ap.add_argument("--quick", action="store_true", help="3 runs per path, 5 s wrk runs")
    ap.add_argument("--runs", type=int, help="timed 512 MiB runs per path (default 5, quick 3)")
    ap.add_argument("--wrk-seconds", type=int, help="wrk/ab duration (default 10, quick 5)")
    ap.add_argument("--containerd-runs", type=int,
                    help="interleaved ctr content fetch runs per path (default 5, quick 3)")
    ap.add_argument("--json", help="write the results as JSON to this path")
    ap.add_argument("--compare", nargs="+", metavar="BINARY",
                    help="only compare CPU-s/GiB (verified and Range) of --pullgate against these "
                         "builds, interleaved over --runs downloads each")
    ap.add_argument("--only", choices=["manifest"],
                    help="run only this phase (after the setup): manifest = the HEAD/GET phase, "
                         "e.g. to profile pullgate under it")
    ap.add_argument("--profile", action="store_true",
                    help="only profile pullgate: perf record and strace -c during a 512 MiB "
                         "download, verified and unverified, and the upstream TLS suite")
    args = ap.parse_args()
    binary = os.path.abspath(args.pullgate)
    if not os.access(binary, os.X_OK):
        print(f"pullgate binary not found or not executable: {binary}", file=sys.stderr)
        return 2
    for tool in ("docker-registry", "nginx", "wrk", "ab", "curl", "openssl", "htpasswd",
                 "containerd", "ctr"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/bin:/usr/sbin").split(":") + ["/usr/sbin"]):
            print(f"missing tool: {tool}", file=sys.stderr)
            return 2
    runs = args.runs or (3 if args.quick else 5)
    wrk_s = args.wrk_seconds or (5 if args.quick else 10)
    ctr_runs = args.containerd_runs or (3 if args.quick else 5)
    conc_runs = 1 if args.quick else 2
    sha_s = 3 if args.quick else 5
    json_path = os.path.abspath(args.json) if args.json else None

    note_load("start")
    netns = h.enter_private_netns("pullgate-bench")
    log(f"private netns {netns} (only lo); pullgate {binary}")
    res: dict = {"mode": "quick" if args.quick else "full", "runs": runs, "wrk_seconds": wrk_s,
                 "pullgate_binary": binary, "cpus": os.cpu_count()}
    work = h.make_tempdir("pgbench-")
    try:
        env = setup_registry(work)
        res["blobs"] = env["blobs"]
        res["manifest_digest"] = env["manifest_digest"]
        reg = env["reg"]
        pg = start_pullgate(binary, env, work)
        ngt = bh.Nginx(reg, tuned=True)
        ngt.start()
        ngd = bh.Nginx(reg, tuned=False)
        ngd.start()
        ngn = bh.Nginx(env["noauth"], tuned=True, name="nginx-tuned-noauth")
        ngn.start()
        log(f"pullgate {pg.listen} pid {pg.pid}; nginx-tuned :{ngt.port}, nginx-default :{ngd.port}, "
            f"nginx-tuned in front of the registry without auth :{ngn.port}")
        res["nginx_conf"] = {"tuned": ngt.conf_text, "default": ngd.conf_text}
        services = [reg, env["noauth"], pg, ngt, ngd, ngn]

        if args.compare and not args.only:
            # Before/after: the same downloads through several builds,
            # interleaved, CPU-s/GiB verified and unverified for each.
            paths = []
            for i, other in enumerate([binary] + [os.path.abspath(b) for b in args.compare]):
                other_pg = pg if i == 0 else start_pullgate(other, env, work)
                label = "pullgate" if i == 0 else f"compare{i}"
                log(f"{label}: {other} pid {other_pg.pid}")
                ns = urllib.parse.quote(reg.host, safe="")
                url = f"{other_pg.url}/v2/{REPO}/blobs/{env['blobs']['big']['digest']}?ns={ns}"
                paths += [Path(label, url, [], other_pg),
                          Path(f"{label}-range", url, ["-H", "Range: bytes=0-"], other_pg)]
                services.append(other_pg)
            res["compare"] = phase_throughput(env, paths, runs, services, work)
            for p in paths:
                t = res["compare"][p.name]
                print(f"  {p.name:16s} CPU-s/GiB median {fmt(t['proxy_cpu_s_per_gib'], '.3f')} runs "
                      + " ".join(f"{v:.3f}" for v in t["proxy_cpu_s_per_gib_runs"])
                      + f"  MiB/s median {fmt(t['median_mib_s'])}")
            raise _OnlyModeDone()
        if args.profile:
            res["profile"] = phase_profile(env, pg, ngt, work)
            raise _OnlyModeDone()
        if args.only == "manifest" and args.compare:
            res["manifest_compare"] = phase_manifest_compare(env, pg, [os.path.abspath(b) for b in args.compare],
                                                             work, wrk_s, runs, services)
            raise _OnlyModeDone()
        if args.only == "manifest":
            res["manifest"] = phase_manifest(env, pg, ngn, work, wrk_s, services)
            print_manifest(res["manifest"], wrk_s)
            raise _OnlyModeDone()
        note_load("sha256")
        res["sha256"] = bh.sha256_cost(sha_s)
        log(f"SHA-256 alone: {res['sha256']['cpu_s_per_gib']:.3f} CPU-s/GiB (openssl speed, "
            f"user CPU {res['sha256']['user_cpu_s']:.2f}s for {res['sha256']['bytes'] / GiB:.2f} GiB)")
        paths = blob_paths(env, pg, ngt, ngd, env["blobs"]["big"]["digest"])
        note_load("throughput")
        res["throughput"] = phase_throughput(env, paths, runs, services, work)
        note_load("containerd")
        res["containerd"] = phase_containerd(env, pg, ngt, ctr_runs, services, work)
        note_load("concurrency")
        by_name = {p.name: p for p in paths}
        res["concurrency"] = phase_concurrency(
            [by_name["direct"], by_name["pullgate"], by_name["nginx-tuned"]], env["blobs"]["big"],
            (3, 8), conc_runs, services)
        note_load("rss")
        res["rss"] = phase_rss(binary, env, work, [reg])
        res["idle"] = phase_idle(binary, env, work)
        note_load("manifest")
        res["manifest"] = phase_manifest(env, pg, ngn, work, wrk_s, services)
        note_load("end")
        check_services(services)
        res["pullgate_decisions"] = summarize_decisions(pg)
        res["pullgate_stderr"] = stderr_findings(pg)
    except _OnlyModeDone:
        if json_path:
            with open(json_path, "w") as f:
                json.dump(res, f, indent=2, default=str)
        return 1 if FAILURES else 0
    except SystemExit:
        raise
    except Exception as exc:  # a setup or harness failure: still report what we have
        import traceback
        traceback.print_exc()
        fail(f"benchmark error: {exc!r}")
    res["load_average_1min"] = LOADAVG
    res["other_work"] = other_work()
    ow = res["other_work"]
    if ow and ow["other_cores"] > 0.2:
        WARNINGS.append(f"other work shared the machine: {ow['other_cores']} cores on average besides this "
                        f"benchmark's {ow['benchmark_cores']} (of {os.cpu_count()}): absolute figures are noisy, "
                        "compare the interleaved paths with each other")
    res["targets"] = summarize(res)
    res["correctness_failures"] = FAILURES
    res["elapsed_s"] = time.monotonic() - T0
    print(f"\nelapsed {res['elapsed_s']:.0f}s")
    if json_path:
        for m in (res.get("manifest") or {}).values():
            # keep wrk's raw output only where something went wrong
            if isinstance(m, dict) and not (m.get("non2xx") or any(m.get("socket_errors", {}).values())
                                            or m.get("rps") is None):
                m.pop("raw", None)
        with open(json_path, "w") as f:
            json.dump(res, f, indent=2, default=str)
        print(f"results written to {json_path}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
