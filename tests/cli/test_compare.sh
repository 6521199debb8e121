#!/bin/sh
# curvscope compare end to end on a bundled model: six preconditioners in
# one command, each its own finetune run under one comparison id, sane
# throughput, memory, loss and accuracy per method and epoch, time to a
# target accuracy (reached / NULL), a method's run equal to the plain
# finetune run with the same options (same tuned model bytes, same loss),
# the report's figure, and bad options refused with one line and exit 2.
# Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"

if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is not installed"
    exit 0
fi

M=$MODELS/tiny_cnn64.onnx
DATA="--data npy:$FX/curv_tiny_cnn64_x.npy --labels npy:$FX/curv_tiny_cnn64_y.npy"
TEST="--test-data npy:$FX/curv_tiny_cnn64_x.npy --test-labels npy:$FX/curv_tiny_cnn64_y.npy"
DB=$tmp/c.db
SIX=sgd,adamw,kfac,shampoo,ekfac,diag
mkdir "$tmp/out"

"$CS" compare "$M" $DATA $TEST --precond $SIX --epochs 2 --batch 4 --seed 3 --threads 1 --lr sgd=0.01 \
    --target-accuracy 0 --out-dir "$tmp/out" --db "$DB" >"$tmp/stdout" 2>"$tmp/err"
rc=$?
ok "compare with six preconditioners exits 0" '[ $rc -eq 0 ]'
ok "it prints one line per method and the comparison" \
    '[ "$(grep -c -E "^(sgd|adamw|kfac|shampoo|ekfac|diag) " "$tmp/stdout")" = 6 ] && grep -q "^comparison 1: 6 methods" "$tmp/stdout"'
ok "one comparison with 2 epochs, batch 4, seed 3, target 0" \
    '[ "$(q "$DB" "SELECT count(*), epochs, batch, seed, target_accuracy FROM comparisons")" = "1|2|4|3|0.0" ]'
ok "six methods, each its own finished finetune run" \
    '[ "$(q "$DB" "SELECT count(DISTINCT m.method), count(DISTINCT r.id) FROM comparison_methods m JOIN runs r ON r.id = m.run_id WHERE r.kind = '\''finetune'\'' AND r.status = '\''done'\''")" = "6|6" ]'
ok "the methods are the six asked for" \
    '[ "$(q "$DB" "SELECT group_concat(method, '\'','\'') FROM (SELECT method FROM comparison_methods ORDER BY method)")" = "adamw,diag,ekfac,kfac,sgd,shampoo" ]'
ok "each run names its comparison" \
    '[ "$(q "$DB" "SELECT count(*) FROM comparison_methods m JOIN conventions c ON c.run_id = m.run_id AND c.key = '\''comparison_id'\'' AND c.value = m.comparison_id")" = 6 ]'
ok "sane values: throughput and time > 0, heap >= 0, loss > 0 and finite, accuracy in [0, 1]" \
    '[ "$(q "$DB" "SELECT count(*) FROM comparison_methods WHERE samples_per_sec > 0 AND train_seconds > 0 AND peak_heap_bytes >= 0 AND final_test_loss > 0 AND final_test_loss < 100 AND final_test_accuracy BETWEEN 0 AND 1")" = 6 ]'
ok "two epochs per method, training time growing" \
    '[ "$(q "$DB" "SELECT count(*) FROM comparison_epochs a JOIN comparison_epochs b ON b.method = a.method AND b.epoch = a.epoch + 1 WHERE b.train_seconds > a.train_seconds")" = 6 ] && [ "$(q "$DB" "SELECT count(*) FROM comparison_epochs")" = 12 ]'
ok "the methods' lr: --lr for sgd, the registry's default for the others" \
    '[ "$(q "$DB" "SELECT lr FROM comparison_methods WHERE method = '\''sgd'\''")" = 0.01 ] && [ "$(q "$DB" "SELECT count(*) FROM comparison_methods WHERE method <> '\''sgd'\'' AND lr > 0")" = 5 ]'
ok "target 0: reached after the first epoch, at its training time" \
    '[ "$(q "$DB" "SELECT count(*) FROM comparison_methods m JOIN comparison_epochs e ON e.method = m.method AND e.epoch = 0 WHERE m.epoch_to_target = 0 AND m.time_to_target = e.train_seconds")" = 6 ]'
ok "the final test numbers are the last epoch's, also in finetune_evals" \
    '[ "$(q "$DB" "SELECT count(*) FROM comparison_methods m JOIN finetune_evals e ON e.run_id = m.run_id AND e.epoch = 1 AND e.split = '\''test'\'' WHERE e.loss = m.final_test_loss")" = 6 ]'
ok "v_comparison has the six rows" '[ "$(q "$DB" "SELECT count(*) FROM v_comparison")" = 6 ]'

# The same seed gives the plain finetune run.
"$CS" finetune "$M" $DATA --precond kfac --epochs 2 --batch 4 --seed 3 --threads 1 --out "$tmp/kfac.onnx" \
    --db "$DB" >"$tmp/ft" 2>&1
ok "kfac: the tuned model is byte for byte the plain finetune run's" 'cmp -s "$tmp/kfac.onnx" "$tmp/out/kfac.onnx"'
"$CS" finetune "$M" $DATA --precond sgd --lr 0.01 --epochs 2 --batch 4 --seed 3 --threads 1 --out "$tmp/sgd.onnx" \
    --db "$DB" >"$tmp/ft" 2>&1
ok "sgd with --lr sgd=0.01: the same model as finetune --lr 0.01" 'cmp -s "$tmp/sgd.onnx" "$tmp/out/sgd.onnx"'
ok "and the same final training loss" \
    '[ "$(q "$DB" "SELECT count(*) FROM finetune_evals a JOIN finetune_evals b ON a.epoch = b.epoch AND a.split = b.split AND a.loss = b.loss WHERE a.split = '\''train'\'' AND a.epoch = 1 AND a.run_id = (SELECT run_id FROM comparison_methods WHERE method = '\''sgd'\'') AND b.run_id = (SELECT max(id) FROM runs)")" = 1 ]'

"$CS" compare "$M" $DATA --precond sgd,kfac --batch 4 --seed 3 --target-accuracy 1 --db "$DB" >/dev/null 2>&1
ok "target 1 not reached: time_to_target NULL; no --test-data: evaluated on the training data" \
    '[ "$(q "$DB" "SELECT count(*) FROM comparison_methods WHERE comparison_id = 2 AND time_to_target IS NULL AND epoch_to_target IS NULL")" = 2 ] && [ "$(q "$DB" "SELECT count(*) FROM comparisons WHERE id = 2 AND test_data IS NULL")" = 1 ]'

"$CS" compare "$M" $DATA --precond sgd,adamw --batch 4 --db "$DB" --json >"$tmp/json" 2>/dev/null
ok "--json: one object naming the comparison and both methods" \
    'grep -q "^{\"comparison\": 3, " "$tmp/json" && [ "$(grep -o "\"method\": " "$tmp/json" | wc -l)" = 2 ] && [ "$(wc -l <"$tmp/json")" = 1 ]'

"$CS" report "$DB" --html "$tmp/r.html" >/dev/null 2>&1
ok "the report draws the comparison's figure and table" 'grep -q "fig-compare" "$tmp/r.html" && grep -q "tbl-compare" "$tmp/r.html"'

bad() {
    "$CS" compare "$M" $DATA "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]
}
ok "an unknown preconditioner: exit 2, one line" 'bad --db "$DB" --precond sgd,nope'
ok "a preconditioner twice: exit 2, one line" 'bad --db "$DB" --precond sgd,sgd'
ok "--lr for a method not compared: exit 2, one line" 'bad --db "$DB" --precond sgd --lr kfac=0.1'
ok "--lr without a value: exit 2, one line" 'bad --db "$DB" --precond sgd --lr sgd='
ok "--target-accuracy above 1: exit 2, one line" 'bad --db "$DB" --precond sgd --target-accuracy 2'
ok "missing --db: exit 2, one line" 'bad --precond sgd'
ok "--test-data alone: exit 2, one line" 'bad --db "$DB" --precond sgd --test-data npy:x.npy'
ok "missing --precond: exit 2, one line" 'bad --db "$DB"'

echo "1..$n"
