#!/bin/sh
# curvscope finetune end to end: the loss goes down for each optimiser, the
# written ONNX file reproduces the reported numbers under `eval`, passes
# onnx.checker (when python3-onnx is installed), the same seed gives the same
# file bit for bit, and progress lands in the database.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
MODELS=$top_srcdir/tests/models

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_finetune.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }
q() { sqlite3 "$1" "$2" 2>/dev/null; }

IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
if [ ! -f "$IMG" ] || ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP Fashion-MNIST or the sqlite3 shell is missing"
    exit 0
fi
NORM="--scale 1/255 --mean 0.2860 --std 0.3530"
DATA="--data idx:$IMG --labels idx:$LAB --samples 2000 $NORM"
num() { sed -n "s/.*\"$1\": *\([-+0-9.eE]*\).*/\1/p" | head -n 1; }

"$CS" eval "$MODELS/mlp.onnx" $DATA --json >"$tmp/before" 2>&1
before=$(num loss <"$tmp/before")
for opt in sgd adamw; do
    # The bundled model is trained already: small steps (sgd's effective
    # step is lr / (1 - momentum)).
    lr=0.002
    [ $opt = adamw ] && lr=0.0005
    "$CS" finetune "$MODELS/mlp.onnx" $DATA --precond $opt --lr $lr --epochs 2 --seed 3 --threads 1 \
        --out "$tmp/$opt.onnx" --db "$tmp/ft.db" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "finetune --precond $opt exits 0" '[ $rc -eq 0 ]'
    final=$(awk '/^epoch 1 train/ { print $5 }' "$tmp/out")
    ok "$opt: the training loss went down ($before -> $final)" \
        'awk -v a="$before" -v b="$final" '\''BEGIN { exit !(b != "" && b + 0 < a + 0) }'\'''
    "$CS" eval "$tmp/$opt.onnx" $DATA --json >"$tmp/after" 2>&1
    ok "$opt: eval of the written model reproduces the final training loss and accuracy" \
        '[ "$(printf "%.6f" "$(num loss <"$tmp/after")")" = "$final" ] && [ "$(printf "%.4f" "$(num accuracy <"$tmp/after")")" = "$(awk '\''/^epoch 1 train/ { print $7 }'\'' "$tmp/out")" ]'
    if /usr/bin/python3 -c "import onnx" 2>/dev/null; then
        ok "$opt: onnx.checker accepts the written model" \
            '/usr/bin/python3 -c "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]))" "$tmp/$opt.onnx" 2>/dev/null'
    else
        n=$((n + 1)); echo "ok $n # SKIP python3-onnx is not installed"
    fi
done
R=$(q "$tmp/ft.db" "SELECT max(id) FROM runs")
ok "two finetune runs, both done" '[ "$(q "$tmp/ft.db" "SELECT count(*) FROM runs WHERE kind = '\''finetune'\'' AND status = '\''done'\''")" = 2 ]'
ok "finetune_steps rows every 10 steps and at the end (2 x 16 steps)" \
    '[ "$(q "$tmp/ft.db" "SELECT count(*), max(step) FROM finetune_steps WHERE run_id = $R")" = "4|32" ]'
ok "a train evaluation per epoch" '[ "$(q "$tmp/ft.db" "SELECT count(*) FROM finetune_evals WHERE run_id = $R AND split = '\''train'\''")" = 2 ]'
"$CS" finetune "$MODELS/mlp.onnx" $DATA --precond sgd --lr 0.002 --epochs 2 --seed 3 --threads 1 \
    --out "$tmp/again.onnx" --db "$tmp/ft.db" >/dev/null 2>&1
ok "the same seed with --threads 1 gives the same model bit for bit" 'cmp -s "$tmp/sgd.onnx" "$tmp/again.onnx"'
"$CS" finetune "$MODELS/mlp.onnx" $DATA --precond sgd --lr 0.002 --epochs 2 --seed 4 --threads 1 \
    --out "$tmp/other.onnx" --db "$tmp/ft.db" >/dev/null 2>&1
ok "another seed gives another model" '! cmp -s "$tmp/sgd.onnx" "$tmp/other.onnx"'
"$CS" finetune "$MODELS/mlp.onnx" $DATA --precond lbfgs --out "$tmp/x.onnx" --db "$tmp/ft.db" >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "an unknown preconditioner: exit 2, one line, no file written" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/x.onnx" ]'
"$CS" finetune "$MODELS/mlp.onnx" $DATA --precond full --lr 0.002 --seed 3 --json \
    --out "$tmp/json.onnx" --db "$tmp/json.db" >"$tmp/json" 2>"$tmp/json.err"
rc=$?
ok "finetune --json: one JSON object with the outcome and the fallbacks; progress on stderr" \
    '[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/json")" -eq 1 ] && grep -q "\"train_loss\": [0-9]" "$tmp/json" &&
     grep -q "\"fallbacks\": \[\"layer /fc1/Gemm" "$tmp/json" && grep -q "^epoch 0 train" "$tmp/json.err"'
# The kernels' OpenMP loops split independent elements only: the gradient
# does not depend on the thread count.
for t in 1 2; do
    "$CS" eval "$MODELS/cnn.onnx" $DATA --threads $t --grad-out "$tmp/grad$t.npy" >/dev/null 2>&1
done
ok "the CNN's gradient with --threads 2 equals --threads 1 bit for bit" \
    '[ -s "$tmp/grad1.npy" ] && cmp -s "$tmp/grad1.npy" "$tmp/grad2.npy"'
echo "1..$n"
exit 0
