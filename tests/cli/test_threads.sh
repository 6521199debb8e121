#!/bin/sh
# Threads (doc/design.md §2.11): every command's results are the same bit for
# bit for --threads 1, 2 and the default (the cores of the affinity mask),
# and curvscope starts with a passive OpenMP wait policy unless the user set
# one.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
MODELS=$top_srcdir/tests/models

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_threads.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }

IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
if [ ! -f "$IMG" ]; then
    echo "1..0 # SKIP Fashion-MNIST is missing"
    exit 0
fi
DATA="--data idx:$IMG --labels idx:$LAB --samples 200 --scale 1/255 --mean 0.2860 --std 0.3530"
# the JSON without what may differ between runs: times, rates, the database path
strip() { sed 's/"seconds": [-+0-9.eE]*,//; s/"samples_per_sec": [-+0-9.eE]*,//; s/"db": "[^"]*",//' "$1"; }

# libgomp prints its settings with OMP_DISPLAY_ENV=verbose, once per start:
# the last GOMP_SPINCOUNT is the one the run used (0 = passive).
spin() { env "$@" OMP_DISPLAY_ENV=verbose "$CS" --version 2>&1 | sed -n "s/.*GOMP_SPINCOUNT = '\([0-9]*\)'.*/\1/p" | tail -n 1; }
if [ -z "$(spin)" ] || [ "$(nproc)" -lt 2 ]; then
    echo "# no libgomp or a single core: wait-policy checks skipped"
else
    ok "wait policy unset: curvscope runs passive (GOMP_SPINCOUNT 0)" '[ "$(spin -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)" = 0 ]'
    ok "OMP_WAIT_POLICY=ACTIVE set by the user is kept" '[ "$(spin OMP_WAIT_POLICY=ACTIVE)" != 0 ]'
    ok "GOMP_SPINCOUNT set by the user is kept" '[ "$(spin -u OMP_WAIT_POLICY GOMP_SPINCOUNT=1234)" = 1234 ]'
fi

# analyze: the MLP's first layer has a K-FAC factor of order 785, above the
# size where dense solves once used BLAS threads.
for t in 1 2 default; do
    th="--threads $t"; [ $t = default ] && th=""
    "$CS" analyze "$MODELS/mlp.onnx" $DATA $th --db "$tmp/a$t.db" --curvature ggn,fisher_emp \
        --repr kfac,diag --json >"$tmp/a$t.json" 2>/dev/null
    strip "$tmp/a$t.json" >"$tmp/a$t"
done
ok "analyze: --threads 2 gives the same JSON as --threads 1" 'grep -q "lambda_max" "$tmp/a1" && cmp -s "$tmp/a1" "$tmp/a2"'
ok "analyze: the default thread count gives the same JSON" 'cmp -s "$tmp/a1" "$tmp/adefault"'

# finetune with K-FAC: Cholesky inverses of order 785 run on all the threads.
for t in 1 2; do
    "$CS" finetune "$MODELS/mlp.onnx" $DATA --precond kfac --seed 1 --threads $t \
        --out "$tmp/k$t.onnx" --db "$tmp/k$t.db" >/dev/null 2>&1
    "$CS" finetune "$MODELS/cnn.onnx" $DATA --precond sgd --seed 1 --threads $t \
        --out "$tmp/s$t.onnx" --db "$tmp/s$t.db" >/dev/null 2>&1
done
ok "finetune kfac (MLP): the same model with --threads 1 and 2" '[ -s "$tmp/k1.onnx" ] && cmp -s "$tmp/k1.onnx" "$tmp/k2.onnx"'
ok "finetune sgd (CNN): the same model with --threads 1 and 2" '[ -s "$tmp/s1.onnx" ] && cmp -s "$tmp/s1.onnx" "$tmp/s2.onnx"'

# eval --json: the same numbers.
for t in 1 2; do
    "$CS" eval "$MODELS/cnn.onnx" $DATA --threads $t --json 2>/dev/null | strip /dev/stdin >"$tmp/e$t"
done
ok "eval: the same loss and accuracy with --threads 1 and 2" 'grep -q loss "$tmp/e1" && cmp -s "$tmp/e1" "$tmp/e2"'
echo "1..$n"
exit 0
