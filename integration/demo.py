#!/usr/bin/python3
"""pullgate in action, on one machine, talking only to loopback.

Starts, inside a private network namespace that has only `lo`:
  - two TLS registries (Debian's docker-registry), each holding an image,
  - pullgate, with one registry on containerRegistry.privateBaseImageAllowList,
  - containerd, whose only way out is pullgate (the no-bypass hosts.toml),
then pulls one image from each registry with `ctr images pull` and prints
what happened and pullgate's decision log.

Run: /usr/bin/python3 integration/demo.py --pullgate build/pullgate
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pullgate", required=True, help="path to the pullgate binary")
    args = ap.parse_args()

    h.enter_private_netns("pullgate-demo")
    ca = h.TestCA()
    allowed = h.Registry(ca, name="registry-allowed", count_connections=True)
    unlisted = h.Registry(ca, name="registry-unlisted", count_connections=True)
    layouts = h.make_tempdir("pullgate-demo-")
    for reg, repo, text in ((allowed, "team/app", b"hello from the allowed registry\n"),
                            (unlisted, "other/app", b"this must not be pulled\n")):
        info = h.build_oci_layout(os.path.join(layouts, repo.replace("/", "_")),
                                  [{"hello.txt": text}], "v1")
        h.push_layout(info.layout_dir, reg, repo, "v1", ca.cert_dir)

    pg = h.Pullgate(args.pullgate, allow_list=[allowed.host],
                    registries={allowed.host: {"caFile": ca.ca_cert}, unlisted.host: {"caFile": ca.ca_cert}})
    hosts = h.make_tempdir("pullgate-demo-hosts-")
    h.write_no_bypass_hosts(hosts, pg.url)
    ctrd = h.Containerd(hosts_dir=hosts, trust_ca_file=ca.ca_cert)

    print(f"\npullgate listens on {pg.listen}; allowlist: [{allowed.host}]")
    print(f"containerd's {hosts}/_default/hosts.toml:\n")
    with open(os.path.join(hosts, "_default", "hosts.toml")) as f:
        print("    " + f.read().replace("\n", "\n    "))

    ok = True
    before = unlisted.connection_count()
    for ref, want in ((f"{allowed.host}/team/app:v1", True), (f"{unlisted.host}/other/app:v1", False)):
        print(f"$ ctr images pull {ref}")
        res = ctrd.pull(ref)
        tail = (res.stdout + res.stderr).strip().splitlines()[-1:] or [""]
        print(f"  -> {'pulled' if res.returncode == 0 else 'refused'}: {tail[0]}\n")
        ok = ok and ((res.returncode == 0) == want)
    extra = unlisted.connection_count() - before
    print(f"connections that reached the unlisted registry during its pull: {extra}")
    ok = ok and extra == 0

    print(f"\ndecision log ({pg.decision_log_path}):")
    for line in pg.decisions():
        print(json.dumps(line))
    print("\ndemo " + ("succeeded: the allowed image was pulled, the unlisted one refused"
                       if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        h.run_cleanups()
