#!/bin/sh
# Configures and builds pullgate into build/ (RelWithDebInfo).
# PULLGATE_WERROR=ON (CI sets it) turns compiler warnings into errors.
set -eu
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPULLGATE_WERROR="${PULLGATE_WERROR:-OFF}" >/dev/null
cmake --build build -j "$(nproc)"
