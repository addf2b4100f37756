#!/bin/sh
# Builds pullgate and its tests with AddressSanitizer + UndefinedBehaviorSanitizer
# into build-asan/ and runs every test (unit and integration) against that
# build. Any sanitizer report aborts the process, which fails the test: the
# integration tests check pullgate's exit status and stderr.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPULLGATE_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$(nproc)"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd build-asan
exec ctest --output-on-failure --timeout 1800
