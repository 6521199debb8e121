#!/bin/sh
# curvscope quantize end to end: the written model loads under info and
# eval, its loss is the stored measured loss, the measured loss lies in the
# stored interval predicted +- tolerance, the allocation respects the
# budget, and bad options are one line with exit 2.  Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"

IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
if [ ! -f "$IMG" ] || ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP Fashion-MNIST or the sqlite3 shell is missing"
    exit 0
fi
DATA="--data idx:$IMG --labels idx:$LAB --samples 500 --scale 1/255 --mean 0.2860 --std 0.3530"
num() { sed -n "s/.*\"$1\": *\([-+0-9.eE]*\).*/\1/p" | head -n 1; }

for budget in 8 6 5; do
    db=$tmp/q$budget.db
    "$CS" quantize "$MODELS/mlp.onnx" $DATA --budget-bits $budget --probes 10 --db "$db" \
        --out "$tmp/q$budget.onnx" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "quantize --budget-bits $budget exits 0" '[ $rc -eq 0 ]'
    ok "budget $budget: the written model loads with info" '"$CS" info "$tmp/q$budget.onnx" >/dev/null 2>&1'
    "$CS" eval "$tmp/q$budget.onnx" $DATA --json >"$tmp/eval" 2>&1
    ok "budget $budget: eval of the written model gives the stored measured loss" \
        'awk -v a="$(num loss <"$tmp/eval")" -v b="$(q "$db" "SELECT measured_loss FROM quant_result")" '\''BEGIN { exit !(a != "" && (a - b < 1e-9 && b - a < 1e-9)) }'\'''
    ok "budget $budget: the measured loss lies in predicted +- tolerance" \
        '[ "$(q "$db" "SELECT count(*) FROM quant_result WHERE abs(measured_loss - predicted_loss) <= tolerance AND tolerance > 0")" = 1 ]'
    ok "budget $budget: the allocation keeps the average width within the budget" \
        '[ "$(q "$db" "SELECT sum(a.bits * p.numel) <= '$budget' * sum(p.numel) FROM quant_allocation a JOIN layers l USING (run_id, layer_id) JOIN params p ON p.run_id = l.run_id AND p.layer_id = l.layer_id AND p.param_id = (SELECT min(param_id) FROM params WHERE run_id = l.run_id AND layer_id = l.layer_id)")" = 1 ]'
    ok "budget $budget: a trace, sensitivities at 8, 6 and 4 bits per quantized layer" \
        '[ "$(q "$db" "SELECT count(*) FROM quant_sensitivity")" = "$(( 3 * $(q "$db" "SELECT count(*) FROM hessian_traces WHERE se > 0") ))" ]'
done
ok "the budget of 8 bits keeps every layer at 8" '[ "$(q "$tmp/q8.db" "SELECT min(bits) FROM quant_allocation")" = 8 ]'
ok "a budget of 5 bits uses narrower widths" '[ "$(q "$tmp/q5.db" "SELECT min(bits) FROM quant_allocation")" -lt 8 ]'
"$CS" report "$tmp/q6.db" --html "$tmp/r.html" >/dev/null 2>&1
ok "the report draws the sensitivity figure with the predicted and measured loss" \
    'grep -q "fig-quant-omega" "$tmp/r.html" && grep -q "Predicted loss .*measured" "$tmp/r.html"'
if /usr/bin/python3 -c "import onnx" 2>/dev/null; then
    ok "onnx.checker accepts the written model" \
        '/usr/bin/python3 -c "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]))" "$tmp/q6.onnx" 2>/dev/null'
else
    n=$((n + 1)); echo "ok $n # SKIP python3-onnx is not installed"
fi
for bad in "--bits 9" "--bits 3.5" "--format int4" "--probes 1" "--budget-bits 6 --budget-bytes 100" "--budget-bits 1"; do
    probes="--probes 2"
    case $bad in --probes*) probes= ;; esac
    "$CS" quantize "$MODELS/mlp.onnx" $DATA $probes $bad --db "$tmp/bad.db" --out "$tmp/bad.onnx" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "quantize $bad: exit 2, one line, no model written" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/bad.onnx" ]'
done
echo "1..$n"
