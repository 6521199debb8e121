#!/bin/sh
# The plan before the work (doc/design.md §3.1): analyze and finetune print
# the memory and the passes per layer and in total; --plan only prints it
# (no database written); --max-memory refuses a run above it with one line
# and exit 2; bad sizes are usage errors; the stored estimate (conventions
# plan_bytes) is within 20% of the run's measured peak (runs.peak_rss_bytes).
# Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
FX=$top_srcdir/tests/fixtures
MODELS=$top_srcdir/tests/models

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_plan.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
q() { sqlite3 "$1" "$2" 2>/dev/null; }

if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is not installed"
    exit 0
fi

TINY="$MODELS/tiny_cnn64.onnx --data npy:$FX/curv_tiny_cnn64_x.npy --labels npy:$FX/curv_tiny_cnn64_y.npy"

# --plan: the table, and nothing written
"$CS" analyze $TINY --db "$tmp/p.db" --curvature hessian,ggn --repr full,kfac,diag --plan >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "analyze --plan exits 0" '[ $rc -eq 0 ]'
ok "--plan writes no database" '[ ! -e "$tmp/p.db" ]'
ok "--plan prints the layer fc's hessian full block" 'grep -q "^fc  *block  *the hessian full block " "$tmp/out"'
ok "--plan prints the whole network's hessian block" 'grep -q "^(shared)  *block  *the hessian block of the whole network" "$tmp/out"'
ok "--plan prints rows for each of the 3 layers" \
    'grep -q "^conv " "$tmp/out" && grep -q "^bn " "$tmp/out" && grep -q "^fc " "$tmp/out"'
ok "--plan prints the total in bytes" 'grep -Eq "^plan: total .* \([0-9]+ bytes\)" "$tmp/out"'
ok "--plan counts one pass of the curvature accumulators" \
    'grep -q "^plan: 1 pass: curvature accumulators" "$tmp/out" && grep -q "^plan: passes total 1$" "$tmp/out"'
ok "--plan runs nothing (no summary)" '! grep -q "results in" "$tmp/out"'
"$CS" analyze $TINY --plan >"$tmp/out2" 2>&1
ok "--plan needs no --db" '[ $? -eq 0 ] && grep -q "^plan: total" "$tmp/out2"'
"$CS" analyze $TINY --curvature ggn --repr ekfac --plan >"$tmp/out3" 2>&1
ok "ekfac plans two passes" 'grep -q "^plan: passes total 2$" "$tmp/out3"'

# the sum of the rows is the total: every item is printed or summed
"$CS" analyze $TINY --max-memory 64G --plan >"$tmp/out4" 2>&1
rc=$?
ok "--max-memory 64G --plan exits 0 and shows the limit" '[ $rc -eq 0 ] && grep -q "limit 64.0 GiB" "$tmp/out4"'

# --max-memory refuses with one line
rm -f "$tmp/r.db"
"$CS" analyze $TINY --db "$tmp/r.db" --max-memory 1M >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "--max-memory 1M refuses with exit 2" '[ $rc -eq 2 ]'
ok "the refusal is one line on stderr" '[ "$(wc -l <"$tmp/err")" -eq 1 ]'
ok "the line names the estimate, the limit, the biggest item and an option" \
    'grep -Eq "needs about [0-9.]+ MiB, above the limit of 1.0 MiB \(--max-memory\); the biggest item is .*: try --" "$tmp/err"'
ok "a refused run records no run" '[ "$(q "$tmp/r.db" "SELECT count(*) FROM runs")" = 0 ]'

# bad sizes are usage errors
for bad in 12Q -1 0 1.5G 12GX ""; do
    "$CS" analyze $TINY --db "$tmp/b.db" --max-memory "$bad" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "--max-memory '$bad' is a usage error" '[ $rc -eq 2 ] && grep -q "max-memory" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]'
done

# --json keeps stdout JSON: the plan goes to stderr
"$CS" analyze $TINY --db "$tmp/j.db" --curvature ggn --repr full --json >"$tmp/out" 2>"$tmp/err"
ok "--json: stdout is the JSON object alone" '[ $? -eq 0 ] && head -c1 "$tmp/out" | grep -q "{" && [ "$(wc -l <"$tmp/out")" -eq 1 ]'
ok "--json: the plan is on stderr" 'grep -q "^plan: total" "$tmp/err"'

# the estimate against the measured peak (within 20%)
within() { # db
    est=$(q "$1" "SELECT value FROM conventions WHERE key = 'plan_bytes'")
    peak=$(q "$1" "SELECT peak_rss_bytes FROM runs")
    echo "# estimate $est bytes, measured peak $peak bytes" >&2
    [ -n "$est" ] && [ -n "$peak" ] && awk -v e="$est" -v p="$peak" 'BEGIN { r = e / p; exit !(r >= 0.8 && r <= 1.2) }'
}
"$CS" analyze $TINY --db "$tmp/t.db" --curvature hessian,ggn,fisher_emp --repr full,kfac,diag,unit >/dev/null 2>&1
ok "tiny_cnn64: the stored passes are 1" '[ "$(q "$tmp/t.db" "SELECT value FROM conventions WHERE key = '\''plan_passes'\''")" = 1 ]'
ok "tiny_cnn64: the estimate is within 20% of the measured peak" 'within "$tmp/t.db" 2>&1'
if [ -r "$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    FM="--data idx:$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz --labels idx:$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz --scale 1/255"
    "$CS" analyze "$MODELS/mlp.onnx" $FM --samples 300 --db "$tmp/m.db" --curvature ggn,fisher_emp --repr full,kfac >/dev/null 2>&1
    ok "mlp ggn,fisher_emp full,kfac (a 33 MiB block): the estimate is within 20% of the peak" 'within "$tmp/m.db" 2>&1'
    "$CS" analyze "$MODELS/cnn.onnx" $FM --samples 200 --db "$tmp/c.db" --curvature ggn --repr kfac,diag >/dev/null 2>&1
    ok "cnn ggn kfac,diag: the estimate is within 20% of the peak" 'within "$tmp/c.db" 2>&1'
else
    skip "Fashion-MNIST not at $FASHION_MNIST_DIR"
    skip "Fashion-MNIST not at $FASHION_MNIST_DIR"
fi

# finetune --plan: no --out or --db, nothing written
"$CS" finetune $TINY --precond full --plan >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "finetune --plan exits 0 without --out and --db" '[ $rc -eq 0 ]'
ok "finetune --plan prints the preconditioner's state and the total" \
    'grep -q "^fc  *precond  *full.s state" "$tmp/out" && grep -q "^plan: total" "$tmp/out"'
ok "finetune --plan counts the training and the refreshes" \
    'grep -q "^plan: 1 pass: training" "$tmp/out" && grep -q "full refreshes" "$tmp/out"'
"$CS" finetune $TINY --precond kfac --out "$tmp/t.onnx" --db "$tmp/f.db" --max-memory 1M >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "finetune --max-memory 1M refuses with one line, nothing written" \
    '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/t.onnx" ]'
"$CS" finetune $TINY --precond full --out "$tmp/t.onnx" --db "$tmp/f2.db" >/dev/null 2>&1
ok "finetune full: the estimate is within 20% of the measured peak" 'within "$tmp/f2.db" 2>&1'

echo "1..$n"
