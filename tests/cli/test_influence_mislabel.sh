#!/bin/sh
# The mislabel recipe of the README: the bundled MLP fine-tuned (curvscope
# finetune, adamw, 3 epochs) on 400 Fashion-MNIST training images whose
# every 20th label is shifted to the next class (5%, 20 examples); the top
# 10% by EK-FAC self-influence (v_mislabel_candidates, quantile <= 0.1) must
# hold at least half of the flipped examples.  The measured fraction is
# printed.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
F=$FASHION_MNIST_DIR

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_influence_mislabel.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }
if [ ! -f "$F/train-labels-idx1-ubyte.gz" ] || ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP Fashion-MNIST or the sqlite3 shell is missing"
    exit 0
fi

# The labels as one CSV column (the IDX header is 8 bytes), every 20th
# (0-based index 0, 20, 40, ...) moved to the next class.
gunzip -c "$F/train-labels-idx1-ubyte.gz" | od -An -tu1 -v -j8 | tr -s ' ' '\n' | grep -v '^$' |
    awk 'NR % 20 == 1 { print ($1 + 1) % 10; next } { print }' >"$tmp/flipped.csv"
ok "the flipped labels are written" '[ "$(wc -l <"$tmp/flipped.csv")" -eq 60000 ]'
D="--data idx:$F/train-images-idx3-ubyte.gz --labels csv:$tmp/flipped.csv --samples 400 --scale 1/255 --mean 0.2860 --std 0.3530"
"$CS" finetune "$top_srcdir/tests/models/mlp.onnx" $D --precond adamw --epochs 3 --batch 32 --seed 1 \
    --out "$tmp/t.onnx" --db "$tmp/ft.db" >"$tmp/ft.out" 2>&1
rc=$?
ok "finetune on the flipped labels exits 0" '[ $rc -eq 0 ]'
"$CS" influence "$tmp/t.onnx" $D --query-data "idx:$F/t10k-images-idx3-ubyte.gz" \
    --query-labels "idx:$F/t10k-labels-idx1-ubyte.gz" --query-samples 4 --method ekfac --top-k 1 \
    --db "$tmp/i.db" >"$tmp/i.out" 2>&1
rc=$?
ok "influence exits 0" '[ $rc -eq 0 ]'
found=$(sqlite3 "$tmp/i.db" "SELECT count(*) FROM v_mislabel_candidates WHERE quantile <= 0.1 AND train_index % 20 = 0")
echo "# the top 10% by self-influence (40 of 400) hold $found of the 20 flipped examples"
ok "the top 10% by self-influence hold at least half of the flipped examples ($found of 20)" \
    '[ -n "$found" ] && [ "$found" -ge 10 ]'
echo "1..$n"
