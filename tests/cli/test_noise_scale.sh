#!/bin/sh
# analyze --noise-scale end to end: a noise_scale row per layer and one for
# the network (layer_id NULL) that sums the layers, B_simple the ratio of
# the stored columns, the estimator's conventions, and bad options refused
# with one line and exit 2.  Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"

if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is not installed"
    exit 0
fi

TINY="$MODELS/tiny_cnn64.onnx --data npy:$FX/curv_tiny_cnn64_x.npy --labels npy:$FX/curv_tiny_cnn64_y.npy"
DB=$tmp/a.db

"$CS" analyze $TINY --db "$DB" --curvature ggn --repr kfac --noise-scale --noise-groups 3 >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "analyze --noise-scale exits 0" '[ $rc -eq 0 ]'
ok "the summary prints the network's B_simple" 'grep -q "^(network) .*[0-9]" "$tmp/out" && grep -q "B_simple" "$tmp/out"'
ok "one row per layer (3) and one for the network" \
    '[ "$(q "$DB" "SELECT count(*), count(layer_id) FROM noise_scale")" = "4|3" ]'
ok "12 samples in 3 groups on every row" \
    '[ "$(q "$DB" "SELECT count(*) FROM noise_scale WHERE n_samples = 12 AND groups = 3")" = 4 ]'
ok "b_simple = trace_cov / grad_sq_norm where |G|^2 > 0, NULL elsewhere" \
    '[ "$(q "$DB" "SELECT count(*) FROM noise_scale WHERE (grad_sq_norm > 0 AND abs(b_simple - trace_cov / grad_sq_norm) <= 1e-12 * abs(b_simple)) OR (grad_sq_norm <= 0 AND b_simple IS NULL)")" = 4 ]'
ok "the network row sums the layers' |G|^2 and tr(Sigma)" \
    '[ "$(q "$DB" "SELECT abs(n.grad_sq_norm - (SELECT sum(grad_sq_norm) FROM noise_scale WHERE layer_id IS NOT NULL)) < 1e-12 * abs(n.grad_sq_norm) AND abs(n.trace_cov - (SELECT sum(trace_cov) FROM noise_scale WHERE layer_id IS NOT NULL)) < 1e-12 * n.trace_cov FROM noise_scale AS n WHERE n.layer_id IS NULL")" = 1 ]'
ok "standard errors are positive" '[ "$(q "$DB" "SELECT count(*) FROM noise_scale WHERE b_simple_se > 0")" -ge 3 ]'
ok "the estimator's conventions are stored" \
    '[ "$(q "$DB" "SELECT count(*) FROM conventions WHERE key LIKE '\''noise_scale_%'\''")" = 4 ] && [ "$(q "$DB" "SELECT value FROM conventions WHERE key = '\''noise_scale_groups'\''")" = 3 ]'

"$CS" analyze $TINY --db "$DB" --curvature fisher_emp --repr diag --noise-scale >"$tmp/out2" 2>"$tmp/err"
ok "with fisher_emp asked for, the same numbers from the shared seeds" \
    '[ "$(q "$DB" "SELECT count(*) FROM noise_scale a JOIN noise_scale b ON b.run_id = 2 AND a.layer_id IS b.layer_id WHERE a.run_id = 1 AND abs(a.trace_cov - b.trace_cov) <= 1e-12 * a.trace_cov AND abs(a.grad_sq_norm - b.grad_sq_norm) <= 1e-12 * abs(a.grad_sq_norm)")" = 4 ]'
ok "default 10 groups, at most half the 12 samples: 6" \
    '[ "$(q "$DB" "SELECT DISTINCT groups FROM noise_scale WHERE run_id = 2")" = 6 ]'

"$CS" analyze $TINY --db "$DB" --curvature ggn --repr kfac >/dev/null 2>&1
ok "without --noise-scale no rows" '[ "$(q "$DB" "SELECT count(*) FROM noise_scale WHERE run_id = 3")" = 0 ]'

"$CS" report "$DB" --run 1 --html "$tmp/r.html" >/dev/null 2>&1
ok "the report draws the noise scale per layer" 'grep -q "fig-noise" "$tmp/r.html" && grep -q "tbl-noise" "$tmp/r.html"'

"$CS" analyze $TINY --db "$DB" --noise-groups 0 >/dev/null 2>"$tmp/err"
rc=$?
ok "--noise-groups 0: exit 2 with one line" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]'

echo "1..$n"
