#!/bin/sh
# Quick start, part 1: shows pullgate doing its job. A real registry pair,
# pullgate and containerd in a private network namespace: the allowlisted
# image is pulled, the unlisted one is refused, the decision log is printed.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec /usr/bin/python3 integration/demo.py --pullgate build/pullgate
