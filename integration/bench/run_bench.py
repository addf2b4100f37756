#!/usr/bin/python3
"""pullgate benchmark: throughput, memory and manifest latency against a
direct TLS pull and nginx as a credential-injecting reverse proxy.

Run (as root, from the repository root):

    /usr/bin/python3 integration/bench/run_bench.py --pullgate build/pullgate [--quick] [--json out.json]

Everything runs in one private network namespace with only ``lo`` (made by
integration/harness.py); nothing talks to anything but 127.0.0.1.

Phases
  1  TLS docker-registry with htpasswd (bcrypt) Basic auth; a 512 MiB and a
     64 MiB random blob pushed through the registry API (POST uploads/ +
     PUT ?digest=), plus a config blob and an OCI manifest referencing them.
  2  pullgate (credentials for the registry) and nginx in two configurations:
     tuned (worker_processes auto, 256k proxy buffers) and default buffers;
     both proxy_buffering off, keepalive 32 upstream pool, verified TLS,
     Authorization injected.
  3  512 MiB blob with curl --http1.1: direct (TLS, -u), pullgate,
     nginx-tuned, nginx-default; one hashed download per path first (sha256
     must equal the digest), then N interleaved timed runs (5, --quick 3).
  4  a FRESH pullgate: baseline RSS, then 100 concurrent curl downloads of the
     64 MiB blob; peak RSS = VmHWM; every download must be 200 with the right
     size, a few are hashed.
  5  manifest GET with wrk -t2 -c32 -d10s --latency (5s with --quick) and
     manifest HEAD with ApacheBench ``ab -i -k -c32 -t10`` (wrk 4.1 cannot do
     HEAD: it waits for a body that a HEAD response never has and completes 0
     requests): pullgate and nginx-tuned, and the registry directly as the
     reference for the upstream ceiling (htpasswd bcrypt on every request).
  6  summary table, targets with PASS/FAIL, optional JSON.

Exit status: 0 unless a correctness check failed (wrong bytes, a failed or
short download, an error status or socket error under wrk, a component that
died). Missed performance targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # integration/ (harness.py)
sys.path.insert(0, HERE)
import harness as h  # noqa: E402
import bench_helpers as bh  # noqa: E402

MiB = bh.MiB
REPO = "bench/blob"
TAG = "v1"
BIG_SIZE = 512 * MiB
MID_SIZE = 64 * MiB
CONCURRENT_STREAMS = 100
HASHED_STREAMS = 4
RSS_TARGET_KIB = 32 * 1024
TARGET_VS_DIRECT = 0.8
TARGET_VS_NGINX = 1.5
# Paths whose answer is not a 200.
EXPECT_STATUS = {"pullgate-range": 206}

T0 = time.monotonic()
FAILURES: list[str] = []     # correctness failures (exit 1)
WARNINGS: list[str] = []     # worth reading, not failures


LOADAVG: dict = {}


def note_load(when: str) -> None:
    """Remember the machine's 1-minute load average (other work on the box
    skews every figure; the summary says so)."""
    LOADAVG[when] = round(os.getloadavg()[0], 2)


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
    layers = [blobs["big"], blobs["mid"]]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [b["digest"] for b in layers]},
    }, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    bh.upload_blob(reg, REPO, config_digest, len(config), data=config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": h.OCI_MANIFEST,
        "config": {"mediaType": h.OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": h.OCI_LAYER_TAR, "digest": b["digest"], "size": b["size"]}
                   for b in layers],
    }, separators=(",", ":")).encode()
    mdigest = bh.push_manifest(reg, REPO, TAG, manifest)
    log(f"manifest {REPO}:{TAG} {mdigest} ({len(manifest)} bytes)")
    return {"ca": ca, "reg": reg, "password": password, "blobs": blobs,
            "manifest": manifest, "manifest_digest": mdigest}


def start_pullgate(binary: str, env: dict, work: str) -> h.Pullgate:
    reg = env["reg"]
    creds = os.path.join(work, "docker-config.json")
    if not os.path.exists(creds):
        auth = base64.b64encode(f"bench:{env['password']}".encode()).decode()
        with open(creds, "w") as f:
            json.dump({"auths": {reg.host: {"auth": auth}}}, f)
        os.chmod(creds, 0o600)
    return h.Pullgate(binary, allow_list=[],
                      registries={reg.host: {"caFile": env["ca"].ca_cert}},
                      extra_config={"credentialsFile": creds})


# --------------------------------------------------------------------------
# phase 3: 512 MiB throughput
# --------------------------------------------------------------------------

def blob_paths(env: dict, pg: h.Pullgate, ngt: bh.Nginx, ngd: bh.Nginx, digest: str) -> list:
    reg = env["reg"]
    ns = urllib.parse.quote(reg.host, safe="")
    rel = f"/v2/{REPO}/blobs/{digest}"
    # (name, url, extra curl args, process group of the proxy or None)
    return [
        ("direct", reg.url + rel, ["--cacert", env["ca"].ca_cert, "-u", f"bench:{env['password']}"],
         None),
        ("pullgate", f"{pg.url}{rel}?ns={ns}", [], pg.pid),
        # The same relay without verification (a range answer is never hashed):
        # in the same run, the difference to "pullgate" is what SHA-256 costs.
        ("pullgate-range", f"{pg.url}{rel}?ns={ns}", ["-H", "Range: bytes=0-"], pg.pid),
        ("nginx-tuned", ngt.url + rel, [], ngt.pid),
        ("nginx-default", ngd.url + rel, [], ngd.pid),
    ]


def phase_throughput(env: dict, paths: list, runs: int, services: list, work: str) -> dict:
    big = env["blobs"]["big"]
    max_time = 120
    reg_pgid = env["reg"].pid
    out: dict = {name: {"verified": False, "runs_mib_s": [], "times_s": [], "errors": [],
                        "proxy_cpu_s": [], "registry_cpu_s": [], "curl_cpu_s": []}
                 for name, _, _, _ in paths}
    log(f"phase 3: verify each path once (sha256 of the bytes received), then "
        f"{runs} interleaved timed runs")
    for name, url, extra, _ in paths:
        r = bh.curl_hashed(url, extra, max_time,
                           header_file=os.path.join(work, f"headers-{name}.txt"))
        hdr = r.get("headers", {})
        out[name]["response_headers"] = hdr
        hdr_problems = []
        want_status = EXPECT_STATUS.get(name, 200)
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
            log(f"  {name:14s} verified: {r['bytes_hashed']} bytes, digest matches "
                f"({mibs(big['size'] / r['wall']):.0f} MiB/s while hashing)")
        else:
            fail(f"{name}: 512 MiB download wrong: curl rc {r['rc']}, HTTP {r['http_code']}, "
                 f"{r['bytes_hashed']} bytes (want {big['size']}), sha256 {r['digest']} "
                 f"(want {big['digest']}); curl: {r['stderr']}")
        check_services(services)
    for i in range(runs):
        for name, url, extra, pgid in paths:
            if not out[name]["verified"]:
                continue
            cpu0 = (bh.group_cpu_seconds(pgid) if pgid else 0.0, bh.group_cpu_seconds(reg_pgid),
                    children_cpu())
            r = bh.curl_timed(url, extra, max_time)
            cpu1 = (bh.group_cpu_seconds(pgid) if pgid else 0.0, bh.group_cpu_seconds(reg_pgid),
                    children_cpu())
            if r["rc"] == 0 and r["http_code"] == EXPECT_STATUS.get(name, 200) and r["size"] == big["size"]:
                out[name]["runs_mib_s"].append(mibs(r["speed"]))
                out[name]["times_s"].append(r["time"])
                if pgid:
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
            f"{n} {out[n]['runs_mib_s'][-1]:.0f}" for n, _, _, _ in paths
            if out[n]["runs_mib_s"] and len(out[n]["runs_mib_s"]) == i + 1)) + " MiB/s")
        check_services(services)
    for name in out:
        v = out[name]["runs_mib_s"]
        out[name]["median_mib_s"] = statistics.median(v) if v else None
        out[name]["min_mib_s"] = min(v) if v else None
        out[name]["max_mib_s"] = max(v) if v else None
        gib = big["size"] / (1 << 30)
        for k in ("proxy_cpu_s", "registry_cpu_s", "curl_cpu_s"):
            c = out[name][k]
            out[name][k.replace("_s", "_s_per_gib")] = statistics.median(c) / gib if c else None
        cores = out[name].get("proxy_cores")
        out[name]["proxy_cores_median"] = statistics.median(cores) if cores else None
    return out


def children_cpu() -> float:
    """utime+stime of this process's reaped children (the curl processes)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------
# phase 4: RSS with 100 concurrent streams
# --------------------------------------------------------------------------

def phase_rss(binary: str, env: dict, work: str, services: list) -> dict:
    mid = env["blobs"]["mid"]
    log(f"phase 4: fresh pullgate, {CONCURRENT_STREAMS} concurrent downloads of the "
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


# --------------------------------------------------------------------------
# phase 5: manifest HEAD/GET under wrk
# --------------------------------------------------------------------------

def phase_manifest(env: dict, pg: h.Pullgate, ngt: bh.Nginx, work: str, duration: int,
                   services: list) -> dict:
    reg = env["reg"]
    ns = urllib.parse.quote(reg.host, safe="")
    rel = f"/v2/{REPO}/manifests/{TAG}"
    auth = reg.auth_headers()
    targets = [
        ("pullgate", f"{pg.url}{rel}?ns={ns}", {}),
        ("nginx-tuned", ngt.url + rel, {}),
        ("direct", reg.url + rel, auth),
    ]
    log(f"phase 5: manifest HEAD (ab -i -k -c32 -t{duration}) and GET "
        f"(wrk -t2 -c32 -d{duration}s --latency)")
    manifest, mdigest = env["manifest"], env["manifest_digest"]
    ctx = env["ca"].ssl_context()
    out: dict = {}
    valid = {}
    for name, url, hdrs in targets:
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
        for name, url, hdrs in targets:
            key = f"{name} {method}"
            if not valid[(name, method)]:
                out[key] = {"skipped": "failed the correctness pre-check"}
                continue
            accept = {"Accept": h.CONTAINERD_MANIFEST_ACCEPT}
            if method == "HEAD":
                # wrk 4.1 cannot measure HEAD (0 requests complete: its parser
                # waits for the Content-Length body); ApacheBench -i can
                r = bh.run_ab_head(url, accept, duration,
                                   basic_auth=f"bench:{env['password']}" if hdrs else None)
            else:
                script = bh.write_wrk_script(os.path.join(work, f"wrk-{name}-{method}.lua"),
                                             method, {**accept, **hdrs})
                r = bh.run_wrk(url, script, duration)
            out[key] = r
            errs = bh.errors_total(r)
            log(f"  {key:18s} {r['tool']:3s} {r['rps'] or 0:9.1f} req/s  p99 {fmt_ms(r['p99_ms'])}  "
                f"requests {r['requests']}  non-2xx {r['non2xx']}  errors {r['socket_errors']}")
            if not r["rps"] or r["rc"] != 0:
                fail(f"{r['tool']} against {key} produced no result (rc {r['rc']}):\n{r['raw'][-1500:]}")
            elif r["non2xx"] or errs:
                fail(f"{r['tool']} against {key}: {r['non2xx']} non-2xx responses, errors "
                     f"{r['socket_errors']} out of {r['requests']} requests")
            check_services(services)
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


def summarize(res: dict) -> list:
    """Print the tables and targets; returns the target list."""
    tp, rss, mf = res.get("throughput", {}), res.get("rss", {}), res.get("manifest", {})
    print()
    print("=" * 78)
    print(f"pullgate benchmark  ({res['mode']}, {res['runs']} runs/path, "
          f"wrk {res['wrk_seconds']}s, {os.cpu_count()} CPUs)")
    print("=" * 78)
    print(f"\n512 MiB blob, curl --http1.1 (MiB/s, curl speed_download; median of {res['runs']})")
    print(f"  {'path':14s} {'median':>7s} {'min':>6s} {'max':>6s}  {'sha256':7s} "
          f"{'CPU s/GiB: proxy':>16s} {'registry':>8s} {'curl':>5s} {'proxy cores':>11s}  runs")
    for name in ("direct", "pullgate", "pullgate-range", "nginx-tuned", "nginx-default"):
        t = tp.get(name)
        if not t:
            continue
        print(f"  {name:14s} {fmt(t['median_mib_s']):>7s} {fmt(t['min_mib_s']):>6s} "
              f"{fmt(t['max_mib_s']):>6s}  {'ok' if t['verified'] else 'WRONG':7s} "
              f"{fmt(t.get('proxy_cpu_s_per_gib'), '.2f') if name != 'direct' else '-':>16s} "
              f"{fmt(t.get('registry_cpu_s_per_gib'), '.2f'):>8s} "
              f"{fmt(t.get('curl_cpu_s_per_gib'), '.2f'):>5s} "
              f"{fmt(t.get('proxy_cores_median'), '.2f') if name != 'direct' else '-':>11s}  "
              + " ".join(f"{v:.0f}" for v in t["runs_mib_s"]))
    med = {n: (tp.get(n) or {}).get("median_mib_s") for n in
           ("direct", "pullgate", "pullgate-range", "nginx-tuned", "nginx-default")}
    r_direct = ratio(med["pullgate"], med["direct"])
    r_tuned = ratio(med["pullgate"], med["nginx-tuned"])
    r_default = ratio(med["pullgate"], med["nginx-default"])
    print(f"  ratios: pullgate/direct {fmtx(r_direct)}, pullgate/nginx-tuned "
          f"{fmtx(r_tuned)}, pullgate/nginx-default {fmtx(r_default)}")
    print(f"  (pullgate-range = the same relay with Range: bytes=0-, not hashed: "
          f"{fmtx(ratio(med['pullgate-range'], med['direct']))} direct, "
          f"{fmtx(ratio(med['pullgate-range'], med['nginx-tuned']))} nginx-tuned; "
          f"verified/unverified {fmtx(ratio(med['pullgate'], med['pullgate-range']))})")
    print(f"  (peers: nginx-tuned/direct {fmtx(ratio(med['nginx-tuned'], med['direct']))}, "
          f"nginx-default/direct {fmtx(ratio(med['nginx-default'], med['direct']))})")
    res["ratios"] = {"pullgate/direct": r_direct, "pullgate/nginx-tuned": r_tuned,
                     "pullgate/nginx-default": r_default,
                     "pullgate-range/direct": ratio(med["pullgate-range"], med["direct"]),
                     "pullgate-range/nginx-tuned": ratio(med["pullgate-range"], med["nginx-tuned"])}
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
    if mf:
        print(f"\nmanifest {REPO}:{TAG}, 32 connections, {res['wrk_seconds']}s each: HEAD with "
              f"ab -i -k (wrk cannot do HEAD), GET with wrk -t2 --latency; direct = the "
              f"registry itself (reference: the upstream ceiling)")
        print(f"  {'target':20s} {'tool':4s} {'req/s':>8s} {'p50':>9s} {'p99':>9s} "
              f"{'requests':>8s} {'non-2xx':>7s}  errors")
        for key, r in mf.items():
            if "skipped" in r:
                print(f"  {key:20s} skipped: {r['skipped']}")
                continue
            se = ", ".join(f"{k} {v}" for k, v in r["socket_errors"].items() if v) or "0"
            print(f"  {key:20s} {r['tool']:4s} {fmt(r['rps'], '.1f'):>8s} {fmt_ms(r['p50_ms']):>9s} "
                  f"{fmt_ms(r['p99_ms']):>9s} {fmt(r['requests'], 'd'):>8s} {r['non2xx']:>7d}  {se}")
    # targets
    targets = []

    def target(name, ok, detail):
        targets.append({"target": name, "pass": ok, "detail": detail})

    target("throughput: pullgate >= 0.8x direct TLS pull",
           r_direct is not None and r_direct >= TARGET_VS_DIRECT, f"{fmtx(r_direct)}")
    target("throughput: pullgate >= 1.5x nginx (default buffers)",
           r_default is not None and r_default >= TARGET_VS_NGINX, f"{fmtx(r_default)}")
    target("throughput: pullgate >= 1.5x nginx (tuned)  [shown too]",
           r_tuned is not None and r_tuned >= TARGET_VS_NGINX, f"{fmtx(r_tuned)}")
    if rss:
        target(f"memory: peak RSS <= 32 MiB with {rss['streams']} streams",
               rss["peak_hwm_kib"] <= RSS_TARGET_KIB and rss["succeeded"] == rss["streams"],
               f"{rss['peak_hwm_kib'] / 1024:.1f} MiB")
    for method in ("HEAD", "GET"):
        p, n = mf.get(f"pullgate {method}", {}), mf.get(f"nginx-tuned {method}", {})
        prps, nrps = p.get("rps"), n.get("rps")
        target(f"manifest {method}: pullgate req/s >= nginx (tuned)",
               bool(prps and nrps and prps >= nrps and not p.get("non2xx")),
               f"{fmt(prps)} vs {fmt(nrps)} req/s ({fmtx(ratio(prps, nrps))}); "
               f"p99 {fmt_ms(p.get('p99_ms'))} vs {fmt_ms(n.get('p99_ms'))}")
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
    ap.add_argument("--wrk-seconds", type=int, help="wrk duration (default 10, quick 5)")
    ap.add_argument("--json", help="write the results as JSON to this path")
    args = ap.parse_args()
    binary = os.path.abspath(args.pullgate)
    if not os.access(binary, os.X_OK):
        print(f"pullgate binary not found or not executable: {binary}", file=sys.stderr)
        return 2
    for tool in ("docker-registry", "nginx", "wrk", "curl", "openssl", "htpasswd"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/bin:/usr/sbin").split(":") + ["/usr/sbin"]):
            print(f"missing tool: {tool}", file=sys.stderr)
            return 2
    runs = args.runs or (3 if args.quick else 5)
    wrk_s = args.wrk_seconds or (5 if args.quick else 10)
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
        log(f"pullgate {pg.listen} pid {pg.pid}; nginx-tuned :{ngt.port}, nginx-default :{ngd.port}")
        res["nginx_conf"] = {"tuned": ngt.conf_text, "default": ngd.conf_text}
        services = [reg, pg, ngt, ngd]

        paths = blob_paths(env, pg, ngt, ngd, env["blobs"]["big"]["digest"])
        note_load("phase 3")
        res["throughput"] = phase_throughput(env, paths, runs, services, work)
        note_load("phase 4")
        res["rss"] = phase_rss(binary, env, work, [reg])
        note_load("phase 5")
        res["manifest"] = phase_manifest(env, pg, ngt, work, wrk_s, services)
        note_load("end")
        check_services(services)
        res["pullgate_decisions"] = summarize_decisions(pg)
        res["pullgate_stderr"] = stderr_findings(pg)
    except SystemExit:
        raise
    except Exception as exc:  # a setup or harness failure: still report what we have
        import traceback
        traceback.print_exc()
        fail(f"benchmark error: {exc!r}")
    res["load_average_1min"] = LOADAVG
    busy = {k: v for k, v in LOADAVG.items() if v > 1.5}
    if busy:
        WARNINGS.append("the machine was busy with other work (1-min load average " +
                        ", ".join(f"{k}: {v}" for k, v in LOADAVG.items()) +
                        f" on {os.cpu_count()} CPUs): absolute figures are noisy, compare "
                        "the interleaved paths with each other")
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
