#!/bin/sh
# Every finetune preconditioner on the bundled MLP, one epoch over 10,000
# Fashion-MNIST training images with its documented defaults: the training
# loss goes down for each, K-FAC ends lower than SGD after the same number
# of steps, layers a preconditioner cannot serve are recorded, the README's
# comparison query runs, and bad options give one error line.  Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"

IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
if [ ! -f "$IMG" ] || ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP Fashion-MNIST or the sqlite3 shell is missing"
    exit 0
fi
NORM="--scale 1/255 --mean 0.2860 --std 0.3530"
DATA="--data idx:$IMG --labels idx:$LAB --samples 10000 $NORM"
VAL="--val-data idx:$FASHION_MNIST_DIR/t10k-images-idx3-ubyte.gz --val-labels idx:$FASHION_MNIST_DIR/t10k-labels-idx1-ubyte.gz"
num() { sed -n "s/.*\"$1\": *\([-+0-9.eE]*\).*/\1/p" | head -n 1; }

"$CS" eval "$MODELS/mlp.onnx" $DATA --json >"$tmp/before" 2>&1
before=$(num loss <"$tmp/before")
ok "the starting training loss is known ($before)" '[ -n "$before" ]'
for p in sgd adamw kfac ekfac shampoo diag unit full smw newton; do
    "$CS" finetune "$MODELS/mlp.onnx" $DATA $VAL --precond $p --seed 1 --threads 1 --log-every 1 \
        --out "$tmp/$p.onnx" --db "$tmp/ft.db" >"$tmp/$p.out" 2>"$tmp/err"
    rc=$?
    final=$(awk '/^epoch 0 train/ { print $5 }' "$tmp/$p.out")
    eval "final_$p=\$final"
    ok "$p: exits 0 and lowers the training loss ($before -> $final)" \
        '[ $rc -eq 0 ] && awk -v a="$before" -v b="$final" '\''BEGIN { exit !(b != "" && b + 0 < a + 0) }'\'''
done
ok "kfac ends below sgd after the same steps ($final_kfac < $final_sgd)" \
    'awk -v a="$final_sgd" -v b="$final_kfac" '\''BEGIN { exit !(b + 0 < a + 0) }'\'''
ok "every run is done, with its steps and peak memory" \
    '[ "$(q "$tmp/ft.db" "SELECT count(*) FROM runs WHERE kind = '\''finetune'\'' AND status = '\''done'\'' AND peak_rss_bytes > 0")" = 10 ]'
ok "full: the layer above --max-full is reported and kept with the run" \
    'grep -q "^note: layer /fc1/Gemm (Gemm): steps along the gradient (sgd): block above --max-full" "$tmp/full.out" &&
     [ "$(q "$tmp/ft.db" "SELECT count(*) FROM conventions c JOIN runs r ON r.id = c.run_id WHERE r.argv LIKE '\''% full %'\'' AND c.key = '\''fallback./fc1/Gemm'\''")" = 1 ]'
ok "kfac: no layer falls back" '! grep -q "^note:" "$tmp/kfac.out"'
"$CS" eval "$tmp/kfac.onnx" $DATA --json >"$tmp/after" 2>&1
ok "kfac: eval of the written model reproduces the final training loss" \
    '[ "$(printf "%.6f" "$(num loss <"$tmp/after")")" = "$final_kfac" ]'
"$CS" finetune "$MODELS/mlp.onnx" $DATA --precond kfac --seed 1 --threads 1 \
    --out "$tmp/kfac-again.onnx" --db "$tmp/again.db" >/dev/null 2>&1
ok "kfac: the same seed with --threads 1 gives the same model bit for bit (sampled labels included)" \
    'cmp -s "$tmp/kfac.onnx" "$tmp/kfac-again.onnx"'
# The README's comparison query, taken from the README itself.
awk '/^\*\*Comparing preconditioners\*\*/ { f = 1 } f && /^```sql finetune$/ { g = 1; next } g && /^```/ { exit } g' \
    "$top_srcdir/README.md" >"$tmp/compare.sql"
rows=$(sqlite3 "$tmp/ft.db" <"$tmp/compare.sql" 2>&1 | grep -c "|")
ok "the README's comparison query gives one row per preconditioner ($rows)" '[ "$rows" -eq 10 ]'
ok "its rows have throughput and peak memory" \
    '[ "$(sqlite3 "$tmp/ft.db" <"$tmp/compare.sql" | awk -F"|" '\''$6 > 0 && $7 > 0'\'' | wc -l)" -eq 10 ]'

err_case() {
    what=$1; shift
    "$CS" finetune "$MODELS/mlp.onnx" $DATA --out "$tmp/bad.onnx" --db "$tmp/bad.db" "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    ok "$what: non-zero exit, one error line, no model written" \
        '[ $rc -ne 0 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/bad.onnx" ]'
}
err_case "--curvature bogus" --precond kfac --curvature bogus
err_case "--curvature with two kinds" --precond kfac --curvature ggn,hessian
err_case "--ema 1" --precond kfac --ema 1
err_case "--update-interval 0" --precond kfac --update-interval 0
err_case "--inverse lu" --precond kfac --inverse lu
err_case "kfac on the Hessian" --precond kfac --curvature hessian
err_case "smw without damping" --precond smw --damping 0
err_case "smw on the GGN" --precond smw --curvature ggn
err_case "--freeze of a missing layer" --precond sgd --freeze /fc9/Gemm
err_case "--damping -1" --precond diag --damping -1
echo "1..$n"
exit 0
