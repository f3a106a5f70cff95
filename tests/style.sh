#!/bin/sh
# tests/style.sh — the house format is checked, not hoped for: every C source and header in
# the tree must be exactly what `clang-format` (the repository's .clang-format) makes of it.
#
#   sh tests/style.sh            check the whole tree (git ls-files *.c *.h)
#   sh tests/style.sh FILE...    check only these files
#
# Prints the offending files and exits 1; `clang-format -i FILE` fixes one. A missing
# clang-format is a failure, not a skip.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! command -v clang-format >/dev/null 2>&1; then
    echo "style: clang-format is not installed (apt-get install clang-format)" >&2
    exit 1
fi
if [ $# -gt 0 ]; then
    files=$(printf '%s\n' "$@")
else
    files=$(git ls-files '*.c' '*.h')
fi
bad=0
for f in $files; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "style: $f is not clang-formatted (clang-format -i $f)"
        bad=$((bad + 1))
    fi
done
n=$(printf '%s\n' $files | wc -l)
if [ "$bad" -gt 0 ]; then
    echo "style: $bad of $n files need clang-format"
    exit 1
fi
echo "style: $n files clang-formatted"
