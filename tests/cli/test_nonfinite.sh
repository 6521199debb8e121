#!/bin/sh
# NaN and Inf in inputs (issue 18, item 4): data and labels with a NaN or an
# Inf, and models whose initializers hold one, are refused before any
# computation with one line naming the sample (and the file) or the
# initializer, exit 2, and no run in the database; a diverged finetune is
# an error, not rows of NULLs.  Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"

# exit 2, one line on stderr that contains $2
expect2() {
    desc=$1 want=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "$desc: exit 2, one line naming it ($(head -c 240 "$tmp/err"))" \
        '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$want" "$tmp/err"'
}

# A linear model on 4 features, 3 classes: six samples in CSV, the fifth
# (index 4) with a NaN in its third feature, labels in the last column.
LIN=$MODELS/tiny_linear64.onnx
cat >"$tmp/good.csv" <<'CSV'
a,b,c,d,y
0.1,0.2,0.3,0.4,0
0.5,0.1,-0.2,0.3,1
-0.1,0.4,0.2,0.0,2
0.3,0.3,0.1,-0.4,1
0.2,-0.3,0.5,0.1,0
0.0,0.1,0.0,0.2,2
CSV
sed '6s/0.5,0.1$/nan,0.1/; 6s/^0.2,-0.3,0.5/0.2,-0.3,nan/' "$tmp/good.csv" >"$tmp/nan.csv"
sed '3s/^0.5/inf/' "$tmp/good.csv" >"$tmp/inf.csv"
GOOD="--data csv:$tmp/good.csv#label=y --labels csv:$tmp/good.csv#label=y"
"$CS" eval "$LIN" $GOOD >"$tmp/out" 2>"$tmp/err"
ok "the clean CSV evaluates (exit 0)" '[ $? -eq 0 ]'

expect2 "eval of data with a NaN" "sample 4 holds NaN at element 2" \
    "$CS" eval "$LIN" --data "csv:$tmp/nan.csv#label=y" --labels "csv:$tmp/good.csv#label=y"
ok "... and the message names the file" 'grep -q "nan.csv" "$tmp/err"'
expect2 "analyze of data with an Inf" "sample 1 holds +Inf at element 0" \
    "$CS" analyze "$LIN" --data "csv:$tmp/inf.csv#label=y" --labels "csv:$tmp/good.csv#label=y" --db "$tmp/a.db"
ok "... and stores no run" '[ "$(q "$tmp/a.db" "SELECT count(*) FROM runs")" = 0 ]'
# Real-valued targets (mse), three per sample, the fifth sample's with a NaN.
printf 't1,t2,t3\n1,0,0\n0,1,0\n0,0,1\n0,1,0\n1,NaN,0\n0,0,1\n' >"$tmp/targets.csv"
sed 's/NaN/0/' "$tmp/targets.csv" >"$tmp/targets_ok.csv"
expect2 "finetune with a NaN target" "labels" \
    "$CS" finetune "$LIN" --data "csv:$tmp/good.csv#label=y" --labels "csv:$tmp/targets.csv" \
    --loss mse --precond sgd --out "$tmp/t.onnx" --db "$tmp/a.db"
ok "... names the sample, writes no model, stores no run" \
    'grep -q "sample 4 holds NaN" "$tmp/err" && [ ! -e "$tmp/t.onnx" ] && [ "$(q "$tmp/a.db" "SELECT count(*) FROM runs")" = 0 ]'

# Models whose initializers hold NaN or Inf (tiny_linear64 with one element
# patched: fc.weight[2] = NaN, fc.bias[1] = +Inf).
expect2 "eval of a model with a NaN weight" "initializer 'fc.weight' holds NaN at flat index 2" \
    "$CS" eval "$FX/nan_weight_linear64.onnx" $GOOD
expect2 "analyze of a model with an Inf bias" "initializer 'fc.bias' holds +Inf at flat index 1" \
    "$CS" analyze "$FX/inf_bias_linear64.onnx" $GOOD --db "$tmp/a.db"
ok "... names the model file and stores no run" \
    'grep -q "inf_bias_linear64.onnx" "$tmp/err" && [ "$(q "$tmp/a.db" "SELECT count(*) FROM runs")" = 0 ]'
expect2 "finetune of a model with a NaN weight" "fc.weight" \
    "$CS" finetune "$FX/nan_weight_linear64.onnx" $GOOD --precond sgd --out "$tmp/t.onnx" --db "$tmp/a.db"
"$CS" info "$FX/nan_weight_linear64.onnx" >/dev/null 2>&1
ok "info still describes such a model" '[ $? -eq 0 ]'

# A finetune that diverges (a learning rate far too large) fails in one line
# and its run is marked failed, with no step rows.
"$CS" finetune "$LIN" --data "csv:$tmp/good.csv#label=y" --labels "csv:$tmp/targets_ok.csv" --loss mse \
    --precond sgd --lr 1e100 --epochs 50 --batch 2 --log-every 1 \
    --out "$tmp/d.onnx" --db "$tmp/d.db" >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "a diverged finetune exits 1 with one line saying so ($(head -c 200 "$tmp/err"))" \
    '[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "diverged" "$tmp/err"'
ok "... its run is failed, with no step rows and no model" \
    '[ "$(q "$tmp/d.db" "SELECT status FROM runs")" = failed ] && [ "$(q "$tmp/d.db" "SELECT count(*) FROM finetune_steps")" = 0 ] && [ ! -e "$tmp/d.onnx" ]'

echo "1..$n"
exit 0
