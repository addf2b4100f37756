#!/usr/bin/env bash
# Re-runs every crash/timeout/oom/leak file that fuzz/run.sh left in
# build-fuzz/artifacts/ and groups them by what went wrong, so each distinct
# bug is listed once with its smallest reproducer (escaped, and as hex).
#
#   fuzz/triage.sh [TARGET...]
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${BUILD_DIR:-$(dirname "$here")/build-fuzz}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [[ $# -gt 0 ]]; then targets=("$@"); else
    mapfile -t targets < <(find "$build/artifacts" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort)
fi

for t in "${targets[@]}"; do
    dir="$build/artifacts/$t"
    [[ -d "$dir" && -x "$build/$t" ]] || continue
    declare -A smallest=() count=()
    while IFS= read -r f; do
        out=$("$build/$t" -timeout=5 -rss_limit_mb=2048 "$f" 2>&1)
        # The first line that says what happened: our invariant, a sanitizer report, or libFuzzer's.
        sig=$(grep -m1 -E '^==== |runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|ERROR: libFuzzer: (timeout|out-of-memory)' <<<"$out" |
              sed -E 's/==[0-9]+==//; s/0x[0-9a-f]+/0x?/g; s/(parsing )'"'"'[^'"'"']*'"'"'/\1.../')
        [[ -n "$sig" ]] || sig="(does not reproduce)"
        # Invariant messages are followed by the failed condition; keep it.
        if [[ "$sig" == "==== pullgate fuzz invariant"* ]]; then
            sig="$sig | $(grep -m1 -A1 '^==== pullgate fuzz invariant' <<<"$out" | tail -n1 | sed 's/^ *//')"
        fi
        count[$sig]=$(( ${count[$sig]:-0} + 1 ))
        if [[ -z "${smallest[$sig]:-}" ]] || [[ $(stat -c%s "$f") -lt $(stat -c%s "${smallest[$sig]}") ]]; then
            smallest[$sig]="$f"
        fi
    done < <(find "$dir" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)
    for sig in "${!smallest[@]}"; do
        f="${smallest[$sig]}"
        echo "== $t: ${count[$sig]} file(s): $sig"
        echo "   smallest: $f ($(stat -c%s "$f") bytes)"
        echo "   escaped:  $(python3 -c 'import sys; print(repr(open(sys.argv[1],"rb").read())[2:-1])' "$f")"
        echo "   hex:      $(xxd -p "$f" | tr -d '\n' | cut -c1-400)"
    done
    unset smallest count
done
