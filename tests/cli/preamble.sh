# Sourced by the shell tests (". "${top_srcdir:-.}/tests/cli/preamble.sh"):
# the paths the tests use, a temporary directory named after the test and
# removed on exit, and the TAP helpers ok (count, run a test expression,
# print ok / not ok) and q (one sqlite3 query, errors silenced).
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
FX=$top_srcdir/tests/fixtures
MODELS=$top_srcdir/tests/models

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }
q() { sqlite3 "$1" "$2" 2>/dev/null; }
