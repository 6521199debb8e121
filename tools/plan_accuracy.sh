#!/bin/sh
# The memory plan against the measured peak: runs `curvscope analyze` on
# several configurations (bundled models, zoo exports; full, K-FAC, diag,
# Hessian, Lanczos spectra) and prints each run's estimate (the stored
# convention plan_bytes), its measured peak resident memory
# (runs.peak_rss_bytes) and their ratio.  Not part of make check: it takes
# minutes.  Usage: tools/plan_accuracy.sh [BUILD_DIR]   (default: .)
# Exits 1 when a ratio falls outside [0.8, 1.2].
b=${1:-.}
CS=$b/curvscope
top=$(cd "$(dirname "$0")/.." && pwd)
D=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
FM="--data idx:$D/train-images-idx3-ubyte.gz --labels idx:$D/train-labels-idx1-ubyte.gz --scale 1/255"
Z=$top/tests/zoo
M=$top/tests/models
tmp=$(mktemp -d "${TMPDIR:-/tmp}/plan_accuracy.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
bad=0
printf '%-44s %12s %12s %7s\n' case estimate measured ratio
run() {
    name=$1
    shift
    db=$tmp/$(echo "$name" | tr -c 'a-z0-9\n' _).db
    if ! "$CS" analyze "$@" --db "$db" >"$tmp/out" 2>"$tmp/err"; then
        printf '%-44s failed: %s\n' "$name" "$(tail -1 "$tmp/err")"
        bad=1
        return
    fi
    est=$(sqlite3 "$db" "SELECT value FROM conventions WHERE key = 'plan_bytes'")
    peak=$(sqlite3 "$db" "SELECT peak_rss_bytes FROM runs")
    awk -v n="$name" -v e="$est" -v p="$peak" 'BEGIN {
        r = e / p; printf "%-44s %10.1f M %10.1f M %7.3f\n", n, e / 1048576, p / 1048576, r;
        exit (r < 0.8 || r > 1.2) }' || bad=1
}
run "mlp ggn,fisher_emp full,kfac,diag" $M/mlp.onnx $FM --samples 1000
run "mlp hessian full" $M/mlp.onnx $FM --samples 200 --curvature hessian --repr full --max-full 2100
run "mlp ggn kfac" $M/mlp.onnx $FM --samples 2000 --curvature ggn --repr kfac
run "mlp ggn,fisher diag" $M/mlp.onnx $FM --samples 2000 --curvature ggn,fisher --repr diag
run "mlp ggn lanczos (eigen)" $M/mlp.onnx $FM --samples 500 --curvature ggn --repr diag --spectrum ggn --lanczos-steps 30 --probes 2
run "mlp ggn ekfac,unit" $M/mlp.onnx $FM --samples 1000 --curvature ggn --repr ekfac,unit
run "cnn ggn,fisher_emp full,kfac,diag" $M/cnn.onnx $FM --samples 500
run "cnn hessian,ggn full,diag" $M/cnn.onnx $FM --samples 100 --curvature hessian,ggn --repr full,diag
run "attn ggn,fisher_emp full,kfac,diag" $M/attn.onnx $FM --samples 300
run "resnet_op17 ggn kfac,diag" $Z/resnet_op17.onnx --data npy:$Z/resnet_x.npy --labels npy:$Z/resnet_y.npy --curvature ggn --repr kfac,diag
run "resnet_op17 ggn full,kfac,diag" $Z/resnet_op17.onnx --data npy:$Z/resnet_x.npy --labels npy:$Z/resnet_y.npy --curvature ggn
run "densenet_op17 ggn,fisher_emp kfac,diag" $Z/densenet_op17.onnx --data npy:$Z/densenet_x.npy --labels npy:$Z/densenet_y.npy --repr kfac,diag
exit $bad
