#!/bin/sh
# House-style checks that CI runs with the tests (STYLE 3 and 22):
#  - every global symbol the core library defines starts with th_;
#  - the C sources are formatted as .clang-format says (when clang-format 14 is installed).
# Usage: check_style.sh SOURCE_DIR LIBTRAILHOOK_CORE.a
set -eu
src=$1
lib=$2
# Sanitizer builds add their own globals (__odr_asan.<name>, __asan_*, ...): those are not ours.
bad=$(nm -g --defined-only "$lib" | awk 'NF==3 && $2 ~ /[TDBRC]/ {print $3}' |
    grep -v -e '^th_' -e '^__odr_asan' -e '^__asan' -e '^__ubsan' -e '^__sancov' || true)
if [ -n "$bad" ]; then
    echo "global symbols without the th_ prefix:"
    echo "$bad"
    exit 1
fi
echo "symbols: every global of $(basename "$lib") starts with th_"
if command -v clang-format >/dev/null 2>&1; then
    cd "$src"
    clang-format --dry-run --Werror src/*.c src/*.h include/trailhook/*.h tests/*.c
    echo "format: clean"
else
    echo "format: clang-format not installed; not checked"
fi
