#!/bin/sh
# finetune --ewc and --old-data end to end on a tiny model: an analyze run
# with --importance feeds the penalty (finetune_penalty rows, ewc_*
# conventions, v_forgetting rows), and every wrong --ewc is one line on
# stderr with exit 2: a missing run, a finetune run, an analyze run without
# importance rows, a model that is not the analyzed one.  Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"

if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is missing"
    exit 0
fi
q() { sqlite3 "$tmp/e.db" "$1" 2>/dev/null; }
DATA="--data npy:$FX/curv_tiny_mlp64_x.npy --labels npy:$FX/curv_tiny_mlp64_y.npy"
OLD="--old-data npy:$FX/curv_tiny_mlp64_x.npy --old-labels npy:$FX/curv_tiny_mlp64_y.npy"

"$CS" analyze "$MODELS/tiny_mlp64.onnx" $DATA --importance --db "$tmp/e.db" >/dev/null 2>&1
ok "analyze --importance (run 1)" '[ "$(q "SELECT kind || status FROM runs WHERE id = 1")" = analyzedone ]'
"$CS" analyze "$MODELS/tiny_mlp64.onnx" $DATA --db "$tmp/e.db" >/dev/null 2>&1
ok "analyze without --importance (run 2)" '[ "$(q "SELECT count(*) FROM importance WHERE run_id = 2")" = 0 ]'

"$CS" finetune "$MODELS/tiny_mlp64.onnx" $DATA $OLD --precond sgd --lr 0.05 --epochs 2 --log-every 1 \
    --ewc 1 --ewc-lambda 5 --out "$tmp/t.onnx" --db "$tmp/e.db" >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "finetune --ewc 1 exits 0" '[ $rc -eq 0 ]'
run=$(q "SELECT max(id) FROM runs")
steps=$(q "SELECT count(*) FROM finetune_steps WHERE run_id = $run")
ok "a finetune_penalty row per finetune_steps row ($steps)" \
    '[ "$steps" -gt 0 ] && [ "$(q "SELECT count(*) FROM finetune_penalty p JOIN finetune_steps s USING (run_id, epoch, step) WHERE run_id = $run")" = "$steps" ]'
# The first step starts at theta*: no penalty; later steps have moved away.
ok "penalty 0 at theta*, positive after" \
    '[ "$(q "SELECT penalty FROM finetune_penalty WHERE run_id = $run AND step = 1")" = 0.0 ] && [ "$(q "SELECT penalty > 0 FROM finetune_penalty WHERE run_id = $run ORDER BY step DESC LIMIT 1")" = 1 ]'
ok "conventions ewc_run, ewc_lambda, ewc_scaling" \
    '[ "$(q "SELECT group_concat(value, \" \") FROM (SELECT value FROM conventions WHERE run_id = $run AND key IN (\"ewc_run\", \"ewc_lambda\") ORDER BY key)")" = "5 1" ] && [ -n "$(q "SELECT value FROM conventions WHERE run_id = $run AND key = \"ewc_scaling\"")" ]'
ok "v_forgetting: one row per epoch" '[ "$(q "SELECT count(*) FROM v_forgetting WHERE run_id = $run")" = 2 ]'
ok "old_start is the model before tuning" \
    '[ "$(q "SELECT count(*) FROM finetune_evals WHERE run_id = $run AND split = \"old_start\" AND epoch = 0")" = 1 ]'

# K-FAC form: factors on the old data at theta*.
"$CS" finetune "$MODELS/tiny_mlp64.onnx" $DATA $OLD --precond sgd --lr 0.05 --epochs 2 --log-every 1 \
    --ewc 1 --ewc-repr kfac --out "$tmp/k.onnx" --db "$tmp/e.db" >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "finetune --ewc 1 --ewc-repr kfac exits 0 ($(cat "$tmp/err"))" '[ $rc -eq 0 ]'
krun=$(q "SELECT max(id) FROM runs")
ok "its ewc_form names the K-FAC layers" \
    'q "SELECT value FROM conventions WHERE run_id = $krun AND key = \"ewc_form\"" | grep -q "^kfac: .* for 2 layers"'
ok "K-FAC penalty positive after the first step" \
    '[ "$(q "SELECT penalty > 0 FROM finetune_penalty WHERE run_id = $krun ORDER BY step DESC LIMIT 1")" = 1 ]'
ok "the K-FAC and diagonal penalties differ" \
    '[ "$(q "SELECT count(*) FROM finetune_penalty a JOIN finetune_penalty b USING (epoch, step) WHERE a.run_id = $run AND b.run_id = $krun AND a.penalty <> b.penalty")" -gt 0 ]'

# Wrong --ewc: one line, exit 2, no run row left behind.
fail_case() {
    name=$1 want=$2
    shift 2
    before=$(q "SELECT count(*) FROM runs")
    "$CS" finetune "$@" $DATA --precond sgd --out "$tmp/x.onnx" --db "$tmp/e.db" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "$name: exit 2 ($rc)" '[ $rc -eq 2 ]'
    ok "$name: one line naming it ($(cat "$tmp/err"))" \
        '[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$want" "$tmp/err"'
    ok "$name: no run stored" '[ "$(q "SELECT count(*) FROM runs")" = "$before" ]'
}
fail_case "missing run" "no run 99" "$MODELS/tiny_mlp64.onnx" --ewc 99
fail_case "a finetune run" "is a finetune run, not an analyze run" "$MODELS/tiny_mlp64.onnx" --ewc "$run"
fail_case "no importance" "no importance rows" "$MODELS/tiny_mlp64.onnx" --ewc 2
fail_case "another model" "is not the one of analyze run 1" "$MODELS/tiny_cnn64.onnx" --ewc 1
fail_case "kfac, tuned weights" "not the analyzed ones" "$tmp/t.onnx" --ewc 1 --ewc-repr kfac $OLD
fail_case "kfac without --old-data" "needs --ewc RUN and the old task" "$MODELS/tiny_mlp64.onnx" --ewc 1 --ewc-repr kfac
fail_case "--old-data alone" "go together" "$MODELS/tiny_mlp64.onnx" --old-data npy:x.npy
echo "1..$n"
exit 0
