#!/usr/bin/python3
"""Load and resource limits: many connections, limits.maxConnections,
slowloris, and a bounded soak, against a real TLS docker-registry through
pullgate.

Everything runs in one private network namespace (only ``lo``):
  registry      docker-registry, TLS (test CA), access log off
  pullgate x4   each with caFile for the registry and an admin listener:
                  main      maxConnections 2000       (a) 1000 connections
                  max50     maxConnections 50          (b)
                  slow      clientHeaderTimeoutSeconds 3  (c) slowloris
                  soak      defaults + maxConnections 2000  (d)
The clients are asyncio (raw sockets, no threads per connection) or a
blocking raw socket client in one thread; RLIMIT_NOFILE is raised first so
pullgate and the registry inherit it.

Run: /usr/bin/python3 integration/test_load.py --pullgate build/pullgate [--quick] [-k PATTERN] [--keep]
--quick shortens the soak from 120 s to 60 s (what ctest runs).
The last line printed is ``N passed, N failed``; exit status 0 only if all passed.
"""

import asyncio
import os
import random
import select
import statistics
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import fault_support as fs  # noqa: E402
import load_client as lc  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
NOFILE = 65536

# (a)
CONNECTIONS = 1000
REQUESTS = 10_000
# RSS after - before: pullgate keeps what 1000 connections needed at once
# (about 58 KiB each: client and upstream sockets, TLS state, parsers, relay
# buffers sized to these small bodies); the allocator does not give it all
# back, so this is no leak. Bound it per connection: memory must scale with
# connections, never with requests. (With Asio's ssl::stream, whose staging
# buffers cost about 75 KiB per upstream connection, it was 111 KiB.)
RSS_PER_CONNECTION_KIB = 96
# (b)
MAX_CONN = 50
OPENED = 60
# (c)
HEADER_TIMEOUT = 3
SLOWLORIS = 200
NORMAL_PULL_LIMIT = 1.0              # seconds for one whole small-image pull
# (d)
SOAK_SECONDS, SOAK_SECONDS_QUICK = 120, 60
SOAK_WORKERS = 24
SOAK_WARMUP = 10
SOAK_SAMPLE_EVERY = 5
SOAK_RSS_TOLERANCE = 0.10

UPSTREAM_CAP = 64  # limits.maxUpstreamConnectionsPerOrigin default
PULLGATE_BINARY = ""   # set by main()
QUICK = False
CONTROL = False
E: dict = {}


def setUpModule():
    if not os.access(PULLGATE_BINARY, os.X_OK):
        raise FileNotFoundError(f"pullgate binary not found or not executable: {PULLGATE_BINARY}")
    t0 = time.monotonic()
    ca = h.TestCA()
    reg = h.Registry(ca, name="registry-load", count_connections=True,
                     extra_config={"log": {"level": "error", "accesslog": {"disabled": True}}})
    layouts = h.make_tempdir("pgit-load-layouts-")
    small = h.build_oci_layout(os.path.join(layouts, "small"),
                               [os.urandom(1 * KiB), os.urandom(4 * KiB), os.urandom(16 * KiB)], "v1")
    h.push_layout(small.layout_dir, reg, "pg/load", "v1")
    medium = h.build_oci_layout(os.path.join(layouts, "medium"), [h.RandomBytes(1 * MiB)], "v1")
    h.push_layout(medium.layout_dir, reg, "pg/medium", "v1")
    E.update(ca=ca, reg=reg, small=small, medium=medium, pullgates=[])

    def pullgate(name, limits):
        admin = h.free_port()
        pg = h.Pullgate(PULLGATE_BINARY, allow_list=[reg.host],
                        registries={reg.host: {"caFile": ca.ca_cert}}, admin_port=admin,
                        extra_config={"limits": limits})
        pg.label = name
        E["pullgates"].append(pg)
        return pg
    # The registry is the bottleneck here (docker-registry spends ~2.5 ms CPU
    # per small blob GET). With limits.maxUpstreamConnectionsPerOrigin (64 by
    # default) the 1000 client requests queue in pullgate for a pooled
    # connection instead of opening 1000 upstream connections whose TLS
    # handshakes would time out: the default timeouts hold.
    E["pg_main"] = pullgate("main", {"maxConnections": 2000})
    E["pg_max50"] = pullgate("max50", {"maxConnections": MAX_CONN})
    E["pg_slow"] = pullgate("slow", {"clientHeaderTimeoutSeconds": HEADER_TIMEOUT})
    E["pg_soak"] = pullgate("soak", {"maxConnections": 2000})
    print(f"setup {time.monotonic() - t0:.1f}s: registry {reg.host}; pullgate "
          + ", ".join(f"{p.label} {p.listen} (admin {p.admin_port}, pid {p.pid})"
                      for p in E["pullgates"]))


# --------------------------------------------------------------------------
# what is requested, and what must come back
# --------------------------------------------------------------------------

def blob(info: h.ImageInfo, digest: str) -> bytes:
    with open(os.path.join(info.layout_dir, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
        return f.read()


def catalogue() -> dict:
    """label -> Req for the request mix (expected answers from the layouts)."""
    reg, small = E["reg"], E["small"]
    ns = reg.host
    accept = {"Accept": h.CONTAINERD_MANIFEST_ACCEPT}
    man = blob(small, small.manifest_digest)
    digest_hdr = {"Docker-Content-Digest": small.manifest_digest,
                  "Content-Length": str(len(man))}
    reqs = {
        "manifest HEAD tag": lc.Req("HEAD", h.v2_path("pg/load", "manifests", "v1", ns), 200,
                                    None, digest_hdr, accept),
        "manifest GET tag": lc.Req("GET", h.v2_path("pg/load", "manifests", "v1", ns), 200,
                                   man, digest_hdr, accept),
        "manifest GET digest": lc.Req("GET", h.v2_path("pg/load", "manifests",
                                                       small.manifest_digest, ns),
                                      200, man, digest_hdr, accept),
        "config GET": lc.Req("GET", h.v2_path("pg/load", "blobs", small.config.digest, ns),
                             200, blob(small, small.config.digest)),
    }
    for i, d in enumerate(small.layer_digests):
        reqs[f"layer{i} GET"] = lc.Req("GET", h.v2_path("pg/load", "blobs", d, ns), 200,
                                       blob(small, d))
    for label, r in reqs.items():
        r.label = label
    return reqs


def soak_catalogue() -> dict:
    """The (a) mix plus bigger, ranged, failing and denied requests."""
    reg, medium = E["reg"], E["medium"]
    ns = reg.host
    reqs = catalogue()
    layer = medium.layer_digests[0]
    data = blob(medium, layer)
    missing = "sha256:" + "0" * 64
    extra = {
        "ping": lc.Req("GET", "/v2/", 200, b"{}"),
        "1MiB layer GET": lc.Req("GET", h.v2_path("pg/medium", "blobs", layer, ns), 200, data),
        "1MiB layer Range": lc.Req("GET", h.v2_path("pg/medium", "blobs", layer, ns), 206,
                                   data[1000:], {"Content-Range": f"bytes 1000-{len(data) - 1}/{len(data)}"},
                                   {"Range": "bytes=1000-"}),
        "unknown blob (404)": lc.Req("GET", h.v2_path("pg/load", "blobs", missing, ns), 404),
        "unknown tag (404)": lc.Req("GET", h.v2_path("pg/load", "manifests", "nope", ns), 404,
                                    send_headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT}),
        "not allowlisted (403)": lc.Req("GET", h.v2_path("pg/x", "manifests", "v1",
                                                         "127.0.0.1:1"), 403),
        "bad name (400)": lc.Req("GET", h.v2_path("UPPER", "manifests", "v1", ns), 400),
    }
    for label, r in extra.items():
        r.label = label
    reqs.update(extra)
    return reqs


SOAK_WEIGHTS = {"manifest HEAD tag": 12, "manifest GET tag": 6, "manifest GET digest": 8,
                "config GET": 8, "layer0 GET": 10, "layer1 GET": 10, "layer2 GET": 10,
                "ping": 3, "1MiB layer GET": 3, "1MiB layer Range": 2, "unknown blob (404)": 2,
                "unknown tag (404)": 2, "not allowlisted (403)": 2, "bad name (400)": 1}


class LoadTest(unittest.TestCase):

    def tearDown(self):
        for pg in E["pullgates"]:
            if not pg.alive() and not getattr(pg, "exit_reported", False):
                pg.exit_reported = True
                self.fail(f"pullgate[{pg.label}] exited (code {pg.proc.returncode})"
                          f"{pg.diagnostics(decisions=0)}")

    def gauge(self, pg: h.Pullgate, name: str = "pullgate_downstream_connections") -> float:
        v = h.metric_value(pg.admin_port, name)
        self.assertIsNotNone(v, f"{name} missing from /metrics")
        return v

    def wait_gauge(self, pg: h.Pullgate, value: float, timeout: float = 10) -> None:
        h.wait_for(lambda: h.metric_value(pg.admin_port, "pullgate_downstream_connections") == value,
                   timeout, interval=0.1, what=f"pullgate[{pg.label}] open connections == {value}")


# --------------------------------------------------------------------------
# (a) 1000 connections, 10,000 requests
# --------------------------------------------------------------------------

class A_ManyConnections(LoadTest):

    @staticmethod
    def plans(seed: int) -> list:
        cat = catalogue()
        labels = list(cat)
        rnd = random.Random(seed)
        per = REQUESTS // CONNECTIONS
        return [[cat[rnd.choice(labels)] for _ in range(per)] for _ in range(CONNECTIONS)]

    def burst(self, pg: h.Pullgate, seed: int):
        peak = lc.Sampler(lambda: h.metric_value(pg.admin_port, "pullgate_downstream_connections")
                          or 0, 0.1)
        up = lc.Sampler(lambda: h.metric_value(pg.admin_port, "pullgate_upstream_connections")
                        or 0, 0.1)
        syn_before = E["reg"].connection_count()
        cpu_pg, cpu_reg = lc.cpu_seconds(pg.pid), lc.cpu_seconds(E["reg"].pid)
        t0 = time.monotonic()
        stats = asyncio.run(lc.run_load(pg.port, self.plans(seed), together=True, timeout=120))
        took = time.monotonic() - t0
        stats.cpu_pg = lc.cpu_seconds(pg.pid) - cpu_pg
        stats.cpu_reg = lc.cpu_seconds(E["reg"].pid) - cpu_reg
        samples, up_samples = peak.stop(), up.stop()
        stats.upstream_opened = E["reg"].connection_count() - syn_before
        stats.upstream_peak = max((v for _, v in up_samples), default=0)
        return stats, took, max((v for _, v in samples), default=0)

    def test_a0_control_same_load_directly_against_the_registry(self):
        """With --control: the load generator and the registry can take this
        load (TLS, keep-alive, straight to the registry), and how fast."""
        if not CONTROL:
            self.skipTest("the direct-to-registry comparison runs with --control")
        reg = E["reg"]
        syn_before = reg.connection_count()
        t0 = time.monotonic()
        stats = asyncio.run(lc.run_load(reg.port, self.plans(0), together=True, timeout=120,
                                        tls=E["ca"].ssl_context()))
        took = time.monotonic() - t0
        print(f"\n  direct to the registry: {stats.connections} TLS connections, {stats.ok}/"
              f"{stats.requests} ok, {stats.failed} failed in {took:.1f}s "
              f"({stats.ok / took:.0f} req/s), p50 {stats.percentile(50) * 1000:.0f} ms, "
              f"p99 {stats.percentile(99) * 1000:.0f} ms, "
              f"{reg.connection_count() - syn_before} TCP connections", end=" ")
        self.assertEqual(stats.errors, [])
        self.assertEqual(stats.ok, REQUESTS)

    def test_a_1000_connections_10000_requests(self):
        pg = E["pg_main"]
        soft, hard = lc.raise_nofile(NOFILE)
        self.assertGreaterEqual(soft, CONNECTIONS + 100)
        # warm-up: one request of each kind, so the burst does not pay for first use
        warm = asyncio.run(lc.run_load(pg.port, [list(catalogue().values())], together=False))
        self.assertEqual(warm.errors, [], pg.diagnostics(decisions=0))
        # a line is written after its response: wait for the warm-up's last one
        since = len(pg.wait_decisions(lambda ls: len(ls) >= warm.requests, what="warm-up lines"))
        self.assertEqual(since, warm.requests, "this pullgate served something else before")
        rss_before = lc.rss_kib(pg.pid)
        stats, took, peak = self.burst(pg, seed=1)
        self.wait_gauge(pg, 0)
        time.sleep(1)
        rss_after, hwm = lc.rss_kib(pg.pid), pg.peak_rss_kib()
        p50, p99 = stats.percentile(50) * 1000, stats.percentile(99) * 1000
        print(f"\n  {stats.connections} connections, {stats.requests} requests, "
              f"{stats.ok} ok, {stats.failed} failed in {took:.1f}s "
              f"({stats.ok / took:.0f} req/s), latency p50 {p50:.0f} ms p99 {p99:.0f} ms, "
              f"peak open client connections {peak:.0f}; upstream: "
              f"{stats.upstream_opened} TCP connections opened, peak open "
              f"{stats.upstream_peak:.0f}, open now "
              f"{self.gauge(pg, 'pullgate_upstream_connections'):.0f}; "
              f"CPU: pullgate {stats.cpu_pg:.1f}s, registry {stats.cpu_reg:.1f}s", end=" ")
        print(f"\n  pullgate RSS: before {rss_before / 1024:.1f} MiB, after (all clients gone) "
              f"{rss_after / 1024:.1f} MiB, peak (VmHWM) {hwm / 1024:.1f} MiB; "
              f"{(rss_after - rss_before) / CONNECTIONS:.0f} KiB per connection; "
              f"fds now {lc.open_fds(pg.pid)}", end=" ")
        if stats.errors:
            print(f"\n  first errors: {stats.errors[:3]}", end=" ")
        self.assertEqual(stats.errors, [], pg.diagnostics(decisions=0))
        self.assertEqual(stats.connections, CONNECTIONS)
        self.assertEqual(stats.ok, REQUESTS)
        self.assertGreaterEqual(peak, CONNECTIONS * 0.9, "the connections were not open at the same time")
        # the upstream sees at most the per-origin cap
        self.assertLessEqual(stats.upstream_peak, UPSTREAM_CAP, "more upstream connections than the cap")
        # memory is bounded by connections, not by requests or bytes
        if not h.SANITIZED:  # in an ASan build RSS is not pullgate's own
            self.assertLess(rss_after - rss_before, RSS_PER_CONNECTION_KIB * CONNECTIONS,
                            f"RSS grew by more than {RSS_PER_CONNECTION_KIB} KiB per connection")
            self.assertLess(hwm - rss_before, RSS_PER_CONNECTION_KIB * CONNECTIONS)
        # every request has its decision line, all allowed
        lines = pg.wait_decisions(lambda ls: len(ls) - since >= REQUESTS, timeout=15,
                                  what="10,000 decision lines")[since:]
        self.assertEqual(len(lines), REQUESTS)
        bad = [d for d in lines if (d.get("decision"), d.get("status")) != ("allow", 200)]
        self.assertEqual(bad[:3], [])


# --------------------------------------------------------------------------
# (b) maxConnections
# --------------------------------------------------------------------------

class B_MaxConnections(LoadTest):

    def test_b_extra_connections_get_503_then_recover(self):
        pg = E["pg_max50"]
        self.wait_gauge(pg, 0)
        since = len(pg.decisions())
        conns = []
        try:
            for _ in range(OPENED):
                conns.append(fs.RawConnection(pg.port, timeout=5))
            # the refused ones are answered at once, without sending anything;
            # the others stay silent
            time.sleep(1.0)
            readable, _, _ = select.select([c.sock for c in conns], [], [], 0)
            refused, idle = [], []
            for c in conns:
                if c.sock in readable:
                    refused.append((c, c.request("GET", "/", timeout=2.0, send=False)))
                else:
                    idle.append((c, None))
            print(f"\n  {OPENED} idle connections with maxConnections {MAX_CONN}: "
                  f"{len(refused)} answered at once, {len(idle)} kept open", end=" ")
            self.assertEqual(len(refused), OPENED - MAX_CONN, [r.describe() for _, r in refused])
            self.assertEqual(len(idle), MAX_CONN)
            for c, res in refused:
                self.assertEqual(res.status, 503, res.describe())
                self.assertTrue(res.complete, res.describe())
                self.assertTrue((res.header("Content-Type") or "").startswith("application/json"),
                                res.describe())
                err = res.json()["errors"][0]
                self.assertIn("maxConnections", err.get("message", ""), res.describe())
                self.assertEqual(err.get("code"), "UNAVAILABLE", res.describe())
                self.assertIn(c.wait_closed(2), ("eof", "reset"),
                              "a refused connection was left open")
            print(f"503 body {refused[0][1].body.decode()!r}", end=" ")
            # the admitted ones work
            for c, _ in idle[:5]:
                r = c.request("GET", "/v2/")
                self.assertEqual((r.status, r.body), (200, b"{}"), r.describe())
            lines = pg.wait_decisions(
                lambda ls: sum(d.get("reason") == "overloaded" for d in ls[since:]) >= OPENED - MAX_CONN,
                what="overloaded lines")[since:]
            over = [d for d in lines if d.get("reason") == "overloaded"]
            self.assertEqual(len(over), OPENED - MAX_CONN)
            for d in over:
                self.assertEqual((d.get("decision"), d.get("status")), ("error", 503), d)
        finally:
            for c in conns:
                c.close()
        # after closing: new connections are accepted again, up to the limit
        self.wait_gauge(pg, 0)
        again = []
        try:
            for _ in range(MAX_CONN):
                again.append(fs.RawConnection(pg.port, timeout=5))
            for c in again:
                r = c.request("GET", "/v2/")
                self.assertEqual((r.status, r.body), (200, b"{}"), r.describe())
                r = c.request("HEAD", h.v2_path("pg/load", "manifests", "v1", E["reg"].host),
                              headers={"Accept": h.CONTAINERD_MANIFEST_ACCEPT})
                self.assertEqual(r.status, 200, r.describe())
            extra = fs.raw_request(pg.port, "GET", "/v2/", timeout=5)
            self.assertEqual(extra.status, 503, "the limit no longer holds: " + extra.describe())
        finally:
            for c in again:
                c.close()


# --------------------------------------------------------------------------
# (c) slowloris
# --------------------------------------------------------------------------

async def _slowloris(port: int, results: list, deadline: float) -> None:
    """Send a request header one byte per second; record when the server
    dropped the connection (seconds after the first byte), or None."""
    header = (b"GET /v2/ HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"a" * 200)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        results.append(("connect failed", str(exc)))
        return
    t_first = None
    outcome = None
    try:
        for i in range(len(header)):
            if time.monotonic() > deadline:
                break
            writer.write(header[i:i + 1])
            await writer.drain()
            if t_first is None:
                t_first = time.monotonic()
            try:
                data = await asyncio.wait_for(reader.read(4096), 1.0)
            except asyncio.TimeoutError:
                continue
            outcome = ("dropped" if not data else f"answered {data[:60]!r}",
                       time.monotonic() - t_first)
            break
    except (ConnectionError, OSError) as exc:
        outcome = ("dropped", time.monotonic() - (t_first or time.monotonic()), str(exc))
    finally:
        writer.close()
    results.append(outcome or ("still open", time.monotonic() - (t_first or time.monotonic())))


async def _silent(port: int, hold: float) -> str:
    """Connect, send nothing; return whether the server closed within ``hold``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = await asyncio.wait_for(reader.read(1), hold)
        return "closed" if not data else "data"
    except asyncio.TimeoutError:
        return "open"
    except OSError:
        return "closed"
    finally:
        writer.close()


def normal_pull(port: int, reqs: list) -> float:
    """One whole small-image pull as containerd does it, on one connection;
    returns seconds (raises AssertionError on a wrong answer)."""
    t0 = time.monotonic()
    c = fs.RawConnection(port, timeout=10)
    try:
        for r in reqs:
            res = c.request(r.method, r.target, r.send_headers, timeout=10)
            why = None if res.complete else "incomplete: " + res.describe()
            why = why or lc.check_answer(r, res.status or 0, res.headers, res.body)
            if why:
                raise AssertionError(why)
    finally:
        c.close()
    return time.monotonic() - t0


class C_Slowloris(LoadTest):

    def test_c_slow_headers_do_not_block_and_are_dropped(self):
        pg = E["pg_slow"]
        cat = catalogue()
        pull = [cat["manifest HEAD tag"], cat["manifest GET digest"], cat["config GET"],
                cat["layer0 GET"], cat["layer1 GET"], cat["layer2 GET"]]
        baseline = [normal_pull(pg.port, pull) for _ in range(5)]
        latencies, failures = [], []
        stop = threading.Event()

        def pull_loop():
            for _ in range(1000):
                if stop.is_set():
                    return
                try:
                    latencies.append(normal_pull(pg.port, pull))
                except (AssertionError, OSError) as exc:
                    failures.append(str(exc))
                time.sleep(0.05)

        async def attack():
            results: list = []
            deadline = time.monotonic() + HEADER_TIMEOUT + 6
            tasks = [_slowloris(pg.port, results, deadline) for _ in range(SLOWLORIS)]
            silent = [_silent(pg.port, HEADER_TIMEOUT + 3) for _ in range(20)]
            await asyncio.sleep(0)
            out = await asyncio.gather(asyncio.gather(*tasks), asyncio.gather(*silent))
            return results, out[1]

        t = threading.Thread(target=pull_loop, daemon=True)
        t.start()
        t0 = time.monotonic()
        results, silent = asyncio.run(attack())
        attack_took = time.monotonic() - t0
        stop.set()
        t.join(15)
        dropped = [r for r in results if r[0] == "dropped"]
        after = sorted(r[1] for r in dropped)
        print(f"\n  {SLOWLORIS} slowloris connections (1 header byte/s): {len(dropped)} dropped "
              f"{after[0] if after else 0:.1f}-{after[-1] if after else 0:.1f}s after their "
              f"first byte (clientHeaderTimeoutSeconds {HEADER_TIMEOUT}); others: "
              f"{[r for r in results if r[0] != 'dropped'][:3]}", end=" ")
        print(f"\n  normal pulls meanwhile: {len(latencies)} in {attack_took:.1f}s, latency median "
              f"{statistics.median(latencies) * 1000 if latencies else 0:.0f} ms, max "
              f"{max(latencies) * 1000 if latencies else 0:.0f} ms (before the attack: max "
              f"{max(baseline) * 1000:.0f} ms); failures {failures[:3]}", end=" ")
        print(f"\n  20 connections that sent nothing: {silent.count('open')} still open "
              f"{HEADER_TIMEOUT + 3}s after connecting (clientIdleTimeoutSeconds applies to them)",
              end=" ")
        self.assertEqual(failures, [], pg.diagnostics(decisions=0))
        self.assertGreaterEqual(len(latencies), 10, "the normal client hardly got a pull done")
        self.assertLess(max(latencies), NORMAL_PULL_LIMIT, "slowloris slowed a normal pull down")
        self.assertEqual(len(dropped), SLOWLORIS, results[:5])
        self.assertGreaterEqual(after[0], HEADER_TIMEOUT - 0.5, "dropped before the header timeout")
        self.assertLessEqual(after[-1], HEADER_TIMEOUT + 2, "dropped long after the header timeout")
        # every connection (the silent ones were closed by us) is gone again
        self.wait_gauge(pg, 0, timeout=5)


# --------------------------------------------------------------------------
# (d) soak
# --------------------------------------------------------------------------

async def _soak_worker(port: int, seed: int, deadline: float, stats: lc.LoadStats,
                       cat: dict) -> None:
    rnd = random.Random(seed)
    labels = list(SOAK_WEIGHTS)
    weights = [SOAK_WEIGHTS[x] for x in labels]
    for _ in range(1_000_000):
        if time.monotonic() >= deadline or len(stats.errors) > 20:
            return
        plan = [cat[x] for x in rnd.choices(labels, weights, k=rnd.randint(1, 30))]
        await lc.run_connection(port, plan, stats, None, timeout=30)


class D_Soak(LoadTest):

    def test_d_soak_rss_stays_flat(self):
        pg = E["pg_soak"]
        duration = SOAK_SECONDS_QUICK if QUICK else SOAK_SECONDS
        cat = soak_catalogue()
        stats = lc.LoadStats()
        rss = lc.Sampler(lambda: lc.rss_kib(pg.pid), SOAK_SAMPLE_EVERY)

        async def soak():
            deadline = time.monotonic() + duration
            await asyncio.gather(*(_soak_worker(pg.port, i, deadline, stats, cat)
                                   for i in range(SOAK_WORKERS)))
        t0 = time.monotonic()
        asyncio.run(soak())
        took = time.monotonic() - t0
        samples = rss.stop()
        fds = lc.open_fds(pg.pid)
        print(f"\n  soak {took:.0f}s, {SOAK_WORKERS} workers: {stats.requests} requests on "
              f"{stats.connections} connections ({stats.requests / took:.0f} req/s), {stats.ok} ok, "
              f"{len(stats.errors)} errors, {stats.bytes / MiB:.0f} MiB; p99 "
              f"{stats.percentile(99) * 1000:.0f} ms; pullgate fds at the end {fds}", end=" ")
        print("\n  RSS samples (s: MiB): " +
              ", ".join(f"{t:.0f}: {v / 1024:.1f}" for t, v in samples), end=" ")
        self.assertEqual(stats.errors, [], pg.diagnostics(decisions=0))
        self.assertGreater(stats.requests, 100 * duration, "the soak did hardly anything")
        self.assertTrue(all(stats.by_label.get(x) for x in SOAK_WEIGHTS), stats.by_label)
        warm = [v for t, v in samples if t >= SOAK_WARMUP]
        self.assertGreaterEqual(len(warm), 3, samples)
        base, end = warm[0], samples[-1][1]
        change = (end - base) / base
        print(f"\n  RSS after warm-up {base / 1024:.1f} MiB, at the end {end / 1024:.1f} MiB "
              f"({change * 100:+.1f}%)", end=" ")
        if h.SANITIZED:
            self.skipTest("ASan build: RSS is not pullgate's own")
        self.assertLessEqual(abs(change), SOAK_RSS_TOLERANCE,
                             f"RSS moved more than {SOAK_RSS_TOLERANCE:.0%} during the soak")


def main() -> int:
    def add_args(ap):
        ap.add_argument("--quick", action="store_true", help=f"soak {SOAK_SECONDS_QUICK}s, not {SOAK_SECONDS}s")
        ap.add_argument("--control", action="store_true",
                        help="also run the (a) load straight against the registry, for comparison")

    def setup(args):
        global QUICK, CONTROL
        QUICK, CONTROL = args.quick, args.control
        # before anything is started: pullgate and the registry inherit it
        print("RLIMIT_NOFILE (soft, hard): %s" % (lc.raise_nofile(NOFILE),))

    return h.suite_main(sys.modules[__name__], "pullgate-load", add_args, setup)


if __name__ == "__main__":
    sys.exit(main())
