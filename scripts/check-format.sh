#!/bin/sh
# Fails when a C++ file of pullgate's differs from .clang-format's layout
# (clang-format 14, Debian 12). Fix with: scripts/check-format.sh --fix
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files 'proxy/*.cpp' 'include/*.hpp' 'include/*.hpp.in' 'tests/*.cpp' 'tests/*.hpp' 'fuzz/*.cpp' 'fuzz/*.hpp' | grep -v '\.in$')
if [ "${1:-}" = "--fix" ]; then
    # shellcheck disable=SC2086
    exec clang-format -i $files
fi
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files
echo "format: $(echo "$files" | wc -l) files match .clang-format"
