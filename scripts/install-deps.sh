#!/bin/sh
# Installs, from Debian 12's own archive, what pullgate needs to build and
# what its tests start for real (registry, containerd, skopeo, ...).
# Run as root. Installs only what is missing. Extra packages come from
# $PULLGATE_EXTRA_PACKAGES; the benchmark (integration/bench) needs
# PULLGATE_EXTRA_PACKAGES="nginx-light wrk linux-perf strace".
set -eu

build="build-essential cmake pkg-config libboost1.81-dev libboost-url1.81-dev libssl-dev
       nlohmann-json3-dev libspdlog-dev doctest-dev libyaml-cpp-dev libsystemd-dev
       libtomlplusplus-dev clang-format"
test="docker-registry containerd runc skopeo apache2-utils openssl iproute2 iptables curl
      python3 python3-grpcio podman buildah python3-yaml ca-certificates
      ccache debhelper dpkg-dev fakeroot lintian mmdebstrap systemd-container
      golang-docker-credential-helpers pass gnupg"

missing=""
for p in $build $test ${PULLGATE_EXTRA_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
