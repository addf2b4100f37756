#!/bin/sh
# Quick start, part 2: installs what is missing, builds, runs every test
# (unit tests, then the integration tests with the real registry and
# containerd). Exit status is ctest's.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build
exec ctest --output-on-failure --timeout 900
