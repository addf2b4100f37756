#!/usr/bin/env bash
# Builds the libFuzzer targets into build-fuzz/ (next to the source tree) and
# runs each for SECONDS (default 60) on a copy of its seed corpus, so the
# committed fuzz/corpus/ never grows. Prints one line per target:
#   name  runs  seconds  exec/s  findings (0 or the crash/timeout/oom file)
# and exits 1 if any target found something (2 on a build/setup error).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      e.g. fuzz/run.sh 600 fuzz_config
#
# Environment: FUZZ_JOBS (targets run at once, default 1), CXX (default clang++),
# BUILD_DIR (default <repo>/build-fuzz), FUZZ_EXTRA_ARGS (more libFuzzer flags).
# The working corpus build-fuzz/corpus/<target>/ is kept between runs (new
# inputs accumulate there); crash files go to build-fuzz/artifacts/<target>/,
# the full libFuzzer output to build-fuzz/logs/<target>.log.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
build="${BUILD_DIR:-$root/build-fuzz}"
seconds="${1:-60}"
shift || true
jobs="${FUZZ_JOBS:-1}"
all_targets=(fuzz_oci_path fuzz_registry_name fuzz_www_authenticate fuzz_config fuzz_credentials fuzz_token_response fuzz_credential_output)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi
for t in "${targets[@]}"; do
    if [[ ! -f "$here/$t.cpp" ]]; then
        echo "unknown target: $t (have: ${all_targets[*]})" >&2
        exit 2
    fi
done

mkdir -p "$build"
cmake -S "$here" -B "$build" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log" >&2; exit 2; }
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >"$build/build.log" 2>&1 ||
    { tail -n 60 "$build/build.log" >&2; exit 2; }

# Leaks are findings too; UB already aborts (-fno-sanitize-recover=all).
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_one() {
    local t="$1"
    local corpus="$build/corpus/$t" artifacts="$build/artifacts/$t/" log="$build/logs/$t.log"
    mkdir -p "$corpus" "$artifacts" "$build/logs"
    cp -f "$here/corpus/$t/"* "$corpus/" 2>/dev/null || true
    local dict=()
    [[ -f "$here/dicts/$t.dict" ]] && dict=("-dict=$here/dicts/$t.dict")
    local start end rc=0 marker="$build/logs/$t.start"
    touch "$marker"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$build/$t" "$corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts" -print_final_stats=1 ${FUZZ_EXTRA_ARGS:-} >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    local runs execs finding
    runs=$(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -n1 || true)
    [[ -n "$runs" ]] || runs=$(grep -oE '^#[0-9]+' "$log" | tr -d '#' | tail -n1 || true)
    execs=$(grep -oE 'exec/s:? [0-9]+' "$log" | grep -oE '[0-9]+' | tail -n1 || true)
    [[ -n "$execs" || -z "$runs" ]] || execs=$((runs / (end - start > 0 ? end - start : 1)))
    # Every crash/timeout/oom/leak file written during this run is a finding
    # (several with -fork=1 -ignore_crashes=1 in FUZZ_EXTRA_ARGS).
    local files=() finding=""
    mapfile -t files < <(find "$artifacts" -type f -newer "$marker" \( -name 'crash-*' -o -name 'timeout-*' \
        -o -name 'oom-*' -o -name 'leak-*' \) | sort)
    if [[ ${#files[@]} -gt 0 ]]; then
        finding="${files[0]}"
        [[ ${#files[@]} -eq 1 ]] || finding="$finding (+$((${#files[@]} - 1)) more in $artifacts)"
    elif [[ $rc -ne 0 ]]; then
        finding="exit-$rc (see $log)"
    fi
    printf '%-24s runs=%-10s seconds=%-5s exec/s=%-7s findings=%s\n' \
        "$t" "${runs:-?}" "$((end - start))" "${execs:-?}" "${finding:-0}"
}

results="$(mktemp "$build/results.XXXXXX")"
trap 'rm -f "$results"' EXIT
running=0
for t in "${targets[@]}"; do
    run_one "$t" >>"$results" &
    running=$((running + 1))
    if [[ $running -ge $jobs ]]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

# Print in target order, whatever order they finished in.
status=0
for t in "${targets[@]}"; do
    line=$(grep -E "^$t " "$results" || echo "$t  (no result)")
    echo "$line"
    [[ "$line" == *"findings=0" ]] || status=1
done
exit $status
