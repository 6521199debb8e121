#!/bin/sh
# curvscope analyze end to end: results in the database, several runs in one
# file, bad --db paths refused before any work, runs interrupted by SIGTERM
# (marked failed) and SIGKILL (left running, file intact), and the README's
# example queries returning rows.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
FX=$top_srcdir/tests/fixtures
MODELS=$top_srcdir/tests/models

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_analyze.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
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
DB=$tmp/a.db

"$CS" analyze $TINY --db "$DB" --curvature hessian,ggn,fisher_emp --repr full,kfac,diag,unit >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "analyze tiny_cnn64 exits 0" '[ $rc -eq 0 ]'
ok "hessian x kfac from lists is skipped with a note" 'grep -q "note: hessian kfac skipped" "$tmp/out"'
ok "the summary names the database" 'grep -q "results in $DB" "$tmp/out"'
ok "schema version 4" '[ "$(q "$DB" "PRAGMA user_version")" = 4 ]'
ok "one run, status done, 12 samples" '[ "$(q "$DB" "SELECT count(*), status, n_samples FROM runs")" = "1|done|12" ]'
ok "the run has the model sha256" '[ "$(q "$DB" "SELECT model_sha256 FROM runs")" = "$(sha256sum "$MODELS/tiny_cnn64.onnx" | cut -c1-64)" ]'
ok "3 layers and 6 parameter tensors" '[ "$(q "$DB" "SELECT (SELECT count(*) FROM layers), (SELECT count(*) FROM params)")" = "3|6" ]'
ok "every layer has hessian, ggn, fisher_emp full rows and the network too" \
    '[ "$(q "$DB" "SELECT count(*) FROM curvature WHERE repr = '\''full'\''")" = 12 ]'
ok "kfac rows for the Conv and Gemm layers, none for the Hessian" \
    '[ "$(q "$DB" "SELECT count(*) FROM curvature WHERE repr = '\''kfac'\''")" = 4 ] && [ "$(q "$DB" "SELECT count(*) FROM curvature WHERE repr = '\''kfac'\'' AND curvature = '\''hessian'\''")" = 0 ]'
ok "eigenvalues are stored largest first" \
    '[ "$(q "$DB" "SELECT count(*) FROM eigenvalues AS a JOIN eigenvalues AS b ON a.run_id = b.run_id AND a.layer_id IS b.layer_id AND a.curvature = b.curvature AND a.repr = b.repr AND b.k = a.k + 1 WHERE b.value > a.value")" = 0 ]'
ok "the ggn full trace of layer 0 equals the sum of its eigenvalues" \
    '[ "$(q "$DB" "SELECT abs(c.trace - (SELECT sum(value) FROM eigenvalues e WHERE e.run_id = c.run_id AND e.layer_id = c.layer_id AND e.curvature = c.curvature AND e.repr = c.repr)) < 1e-9 * abs(c.trace) FROM curvature c WHERE c.layer_id = 0 AND c.curvature = '\''ggn'\'' AND c.repr = '\''full'\''")" = 1 ]'
ok "K-FAC factor eigenvalues for A and G" '[ "$(q "$DB" "SELECT count(DISTINCT factor) FROM kfac_factors")" = 2 ]'
ok "approximations are scored against the exact block" \
    '[ "$(q "$DB" "SELECT count(*) FROM repr_comparison WHERE reference_repr = '\''full'\''")" -ge 10 ]'
ok "conventions are stored" '[ "$(q "$DB" "SELECT count(*) FROM conventions")" -ge 10 ]'

"$CS" analyze $TINY --db "$DB" --curvature fisher_mc --repr diag --mc-samples 3 --seed 4 >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "a second run in the same file exits 0" '[ $rc -eq 0 ]'
ok "two runs, both done, the first one's rows intact" \
    '[ "$(q "$DB" "SELECT group_concat(id || status, '\'','\'') FROM runs")" = "1done,2done" ] && [ "$(q "$DB" "SELECT count(*) FROM curvature WHERE run_id = 1")" -ge 30 ]'
ok "the second run stores mc_samples 3 and seed 4" \
    '[ "$(q "$DB" "SELECT group_concat(value, '\'','\'') FROM conventions WHERE run_id = 2 AND key IN ('\''mc_samples'\'', '\''seed'\'') ORDER BY key")" = "3,4" ]'

# Whole-network spectra: Lanczos (2 repeats), SLQ, Hutchinson, power.
"$CS" analyze $TINY --db "$DB" --curvature ggn --repr diag --spectrum hessian,ggn \
    --lanczos-steps 12 --probes 6 --repeats 2 --bins 40 --topk 3 --power >"$tmp/out" 2>"$tmp/err"
rc=$?
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "analyze --spectrum exits 0" '[ $rc -eq 0 ]'
ok "the summary reports the network Lanczos and traces" 'grep -q "network hessian    lanczos" "$tmp/out" && grep -q "trace: hutchinson" "$tmp/out"'
ok "lanczos, slq, hutchinson and power rows for each spectrum" \
    '[ "$(q "$DB" "SELECT count(*) FROM curvature WHERE run_id = $R AND layer_id IS NULL AND method IN ('\''lanczos'\'', '\''slq'\'', '\''hutchinson'\'', '\''power'\'')")" = 8 ]'
ok "3 top and 3 bottom Lanczos eigenvalues per curvature, bottom ranked from the end (k = dim - 1)" \
    '[ "$(q "$DB" "SELECT count(*), max(k) FROM eigenvalues WHERE run_id = $R AND method = '\''lanczos'\'' AND curvature = '\''ggn'\''")" = "6|98" ]'
ok "Ritz values with residuals for both repeats" \
    '[ "$(q "$DB" "SELECT count(DISTINCT repeat) FROM ritz_values WHERE run_id = $R AND residual IS NOT NULL")" = 2 ]'
ok "the spread across repeats is computed" \
    '[ "$(q "$DB" "SELECT count(*) FROM v_ritz_spread WHERE run_id = $R AND repeats = 2 AND stddev IS NOT NULL")" -gt 0 ]'
ok "Lanczos and SLQ tridiagonals are stored (2 x 12 + 6 probes' steps per curvature)" \
    '[ "$(q "$DB" "SELECT count(DISTINCT method || repeat || probe) FROM lanczos_coefficients WHERE run_id = $R AND curvature = '\''hessian'\''")" = 8 ]'
ok "the density has 40 bins per curvature and integrates to 1" \
    '[ "$(q "$DB" "SELECT count(*), round(sum(density * (hi - lo)), 6) FROM density WHERE run_id = $R AND curvature = '\''hessian'\''")" = "40|1.0" ]'
ok "the negative share of the Hessian density is between 0 and 1" \
    '[ "$(q "$DB" "SELECT negative_fraction BETWEEN 0 AND 1 FROM v_spectrum_negative WHERE run_id = $R AND curvature = '\''hessian'\''")" = 1 ]'
ok "power iteration agrees with Lanczos on the top GGN eigenvalue (rtol 1e-3)" \
    '[ "$(q "$DB" "SELECT abs(p.lambda_max - l.lambda_max) <= 1e-3 * abs(l.lambda_max) FROM curvature p JOIN curvature l ON l.run_id = p.run_id AND l.curvature = p.curvature AND l.method = '\''lanczos'\'' AND l.layer_id IS NULL WHERE p.run_id = $R AND p.method = '\''power'\'' AND p.curvature = '\''ggn'\''")" = 1 ]'
ok "the spectrum settings are stored as conventions" \
    '[ "$(q "$DB" "SELECT value FROM conventions WHERE run_id = $R AND key = '\''lanczos_steps'\''")" = 12 ]'
# Matrix-free spectra of a layer too large for an exact block, and the
# comparison with the exact whole-network block when there is one.
"$CS" analyze $TINY --db "$DB" --curvature ggn --repr full --spectrum ggn --lanczos-steps 20 --probes 4 \
    --max-full 45 >"$tmp/out" 2>"$tmp/err"
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "--spectrum covers the 51-parameter layer above --max-full 45 (lanczos, slq, hutchinson rows)" \
    '[ "$(q "$DB" "SELECT count(*) FROM curvature WHERE run_id = $R AND layer_id = 2 AND method IN ('\''lanczos'\'', '\''slq'\'', '\''hutchinson'\'')")" = 3 ] && grep -q "^fc ggn" "$tmp/out"'
"$CS" analyze $TINY --db "$DB" --curvature ggn --repr full --spectrum ggn --lanczos-steps 20 --probes 4 >"$tmp/out" 2>"$tmp/err"
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "Lanczos's top eigenvalue is scored against the exact whole-network block (rel err < 1e-8)" \
    '[ "$(q "$DB" "SELECT rel_lambda_max_error < 1e-8 FROM repr_comparison WHERE run_id = $R AND layer_id IS NULL AND repr = '\''lanczos'\''")" = 1 ]'
ok "--eigenvectors: none stored unless asked" '[ "$(q "$DB" "SELECT count(*) FROM eigenvectors WHERE run_id = $R")" = 0 ]'
"$CS" analyze $TINY --db "$DB" --curvature ggn --repr full --spectrum ggn --lanczos-steps 30 --probes 2 --eigenvectors 2 >"$tmp/out" 2>"$tmp/err"
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "--eigenvectors 2: 2 x 99 elements, each vector of unit norm" \
    '[ "$(q "$DB" "SELECT count(*), round(sum(value * value), 9) FROM eigenvectors WHERE run_id = $R")" = "198|2.0" ]'
ok "the two eigenvectors are orthogonal" \
    '[ "$(q "$DB" "SELECT abs(sum(a.value * b.value)) < 1e-9 FROM eigenvectors a JOIN eigenvectors b ON b.run_id = a.run_id AND b.param_id = a.param_id AND b.flat_index = a.flat_index AND b.k = 1 WHERE a.run_id = $R AND a.k = 0")" = 1 ]'
expect2_spectrum() {
    "$CS" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
expect2_spectrum analyze $TINY --db "$DB" --spectrum fisher_mc
ok "--spectrum fisher_mc is refused: exit 2, one line" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]'

# Importance scores.
"$CS" analyze $TINY --db "$DB" --importance --curvature fisher_emp --repr diag >"$tmp/out" 2>"$tmp/err"
rc=$?
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "analyze --importance exits 0" '[ $rc -eq 0 ]'
ok "one importance row per parameter (99), with obs, obd, taylor, grad and both diagonals" \
    '[ "$(q "$DB" "SELECT count(*), count(obs), count(obd), count(taylor), count(grad), count(diag_ggn), count(diag_fisher_emp) FROM importance WHERE run_id = $R")" = "99|99|99|99|99|99|99" ]'
ok "taylor is |grad * value| and obd is diag_ggn * value^2 / 2" \
    '[ "$(q "$DB" "SELECT count(*) FROM importance WHERE run_id = $R AND (abs(taylor - abs(grad * value)) > 1e-12 * abs(taylor) + 1e-300 OR abs(obd - 0.5 * diag_ggn * value * value) > 1e-12 * abs(obd) + 1e-300)")" = 0 ]'
ok "per-unit aggregates cover every unit of the three layers (4 + 4 + 3)" \
    '[ "$(q "$DB" "SELECT count(*) FROM v_importance_unit WHERE run_id = $R")" = 11 ]'
ok "per-layer aggregates sum the per-unit ones" \
    '[ "$(q "$DB" "SELECT count(*) FROM v_importance_layer AS l WHERE l.run_id = $R AND abs(l.obs_sum - (SELECT sum(u.obs_sum) FROM v_importance_unit AS u WHERE u.run_id = l.run_id AND u.layer_id = l.layer_id)) > 1e-12 * l.obs_sum")" = 0 ]'

RF=$R
"$CS" analyze $TINY --db "$DB" --importance --importance-top 2 --curvature fisher_emp --repr diag >"$tmp/out" 2>"$tmp/err"
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "--importance-top 2 keeps between 2 and 2 x 5 scores rows per layer" \
    '[ "$(q "$DB" "SELECT min(c) >= 2 AND max(c) <= 10 FROM (SELECT count(*) AS c FROM importance i JOIN params p ON p.run_id = i.run_id AND p.param_id = i.param_id WHERE i.run_id = $R GROUP BY p.layer_id)")" = 1 ]'
ok "--importance-top keeps the largest obd of each layer" \
    '[ "$(q "$DB" "SELECT count(*) FROM v_importance_layer l WHERE l.run_id = $RF AND NOT EXISTS (SELECT 1 FROM importance i JOIN params p ON p.run_id = i.run_id AND p.param_id = i.param_id WHERE i.run_id = $R AND p.layer_id = l.layer_id AND i.obd = (SELECT max(i2.obd) FROM importance i2 JOIN params p2 ON p2.run_id = i2.run_id AND p2.param_id = i2.param_id WHERE i2.run_id = $RF AND p2.layer_id = l.layer_id))")" = 0 ]'
ok "the aggregates stay complete with --importance-top (equal to the full run's)" \
    '[ "$(q "$DB" "SELECT count(*) FROM v_importance_layer a JOIN v_importance_layer b ON b.layer_id = a.layer_id AND b.run_id = $R WHERE a.run_id = $RF AND (a.n != b.n OR abs(a.obs_sum - b.obs_sum) > 1e-12 * abs(a.obs_sum))")" = 0 ]'

# The pruning check.
"$CS" analyze $TINY --db "$DB" --curvature ggn --repr diag --prune-check 0.2,0.6 >"$tmp/out" 2>"$tmp/err"
rc=$?
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "analyze --prune-check exits 0 and names the best score" '[ $rc -eq 0 ] && grep -q "predicts damage best" "$tmp/out"'
ok "the pruning curve has the unpruned point and 2 fractions for each of 4 scores" \
    '[ "$(q "$DB" "SELECT count(*) FROM pruning_curve WHERE run_id = $R")" = 9 ]'
ok "20% of the 84 Conv and Gemm weights (36 + 48) is 17 for every score" \
    '[ "$(q "$DB" "SELECT group_concat(DISTINCT n_pruned) FROM pruning_curve WHERE run_id = $R AND fraction = 0.2")" = 17 ]'
"$CS" eval $TINY --json --batch 128 >"$tmp/eval" 2>&1
ok "the unpruned point's loss is the model's eval loss" \
    '[ "$(q "$DB" "SELECT round(loss, 9) FROM pruning_curve WHERE run_id = $R AND score = '\''none'\''")" = "$(sed -n "s/.*\"loss\": *\([-0-9.eE+]*\).*/\1/p" "$tmp/eval" | awk '\''{ printf "%.9f", $1 }'\'' | sed "s/0*$//")" ]'

# Step diagnostics.
"$CS" analyze $TINY --db "$DB" --curvature ggn --repr diag --precond sgd,kfac,newton --damping 0.01,0.1 >"$tmp/out" 2>"$tmp/err"
rc=$?
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "analyze --precond exits 0 and names the best preconditioner" '[ $rc -eq 0 ] && grep -q "gives the largest actual decrease" "$tmp/out"'
ok "one row per (preconditioner, damping) and layer or network: (1 + 2 + 2) x 4" \
    '[ "$(q "$DB" "SELECT count(*) FROM step_diagnostics WHERE run_id = $R")" = 20 ]'
ok "rho is actual / predicted on every row" \
    '[ "$(q "$DB" "SELECT count(*) FROM step_diagnostics WHERE run_id = $R AND abs(rho - actual_decrease / predicted_decrease) > 1e-9 * abs(rho)")" = 0 ]'
ok "the sgd step is -g: cosine 1 and |step| = |g|" \
    '[ "$(q "$DB" "SELECT count(*) FROM step_diagnostics WHERE run_id = $R AND precond = '\''sgd'\'' AND (abs(cosine - 1) > 1e-12 OR abs(step_norm - grad_norm) > 1e-12 * grad_norm)")" = 0 ]'
ok "the best step size is on the grid 2^-8 .. 2^2" \
    '[ "$(q "$DB" "SELECT count(*) FROM step_diagnostics WHERE run_id = $R AND (best_lr < 0.0039 OR best_lr > 4.001 OR best_change > actual_decrease)")" = 0 ]'
"$CS" analyze $TINY --db "$DB" --curvature ggn --repr diag --precond shampoo --damping 0.01 >"$tmp/out" 2>"$tmp/err"
R=$(q "$DB" "SELECT max(id) FROM runs")
ok "--precond shampoo: rows for the network and 3 layers, the BatchNorm layer falling back to sgd" \
    '[ "$(q "$DB" "SELECT count(*) FROM step_diagnostics WHERE run_id = $R AND precond = '\''shampoo'\''")" = 4 ] && grep -q "shampoo: layer bn falls back to sgd" "$tmp/out"'
expect_bad() { "$CS" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
expect_bad analyze $TINY --db "$DB" --precond adam
ok "--precond adam is refused: exit 2, one line" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]'

# Bad --db and bad requests: one line, exit 2, nothing stored.
before=$(q "$DB" "SELECT count(*) FROM runs")
expect2() {
    desc=$1; shift
    "$CS" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "$desc: exit 2 with one error line" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]'
}
mkdir "$tmp/dir"
expect2 "--db is a directory" analyze $TINY --db "$tmp/dir"
echo "not a database" >"$tmp/text.db"
expect2 "--db is a text file" analyze $TINY --db "$tmp/text.db"
ok "the text file is left as it was" '[ "$(cat "$tmp/text.db")" = "not a database" ]'
expect2 "--db in a folder that does not exist" analyze $TINY --db "$tmp/no/such/dir/x.db"
expect2 "hessian with kfac asked for alone" analyze $TINY --db "$DB" --curvature hessian --repr kfac
expect2 "an unknown curvature" analyze $TINY --db "$DB" --curvature sharpness
expect2 "a missing --db" analyze $TINY
expect2 "a truncated model" analyze "$FX/curv_tiny_cnn64_y.npy" --data "npy:$FX/curv_tiny_cnn64_x.npy" --labels "npy:$FX/curv_tiny_cnn64_y.npy" --db "$DB"
ok "no run was added by the refused commands" '[ "$(q "$DB" "SELECT count(*) FROM runs")" = "$before" ]'

# Interrupted runs on real data (long enough to interrupt).
IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
if [ -f "$IMG" ]; then
    REAL="$MODELS/cnn.onnx --data idx:$IMG --labels idx:$LAB --scale 1/255 --mean 0.2860 --std 0.3530"
    for sig in TERM KILL; do
        "$CS" analyze $REAL --samples 20000 --db "$DB" >"$tmp/out" 2>"$tmp/err" &
        pid=$!
        # Wait until the run row is written, then a little more.
        i=0
        while [ $i -lt 100 ] && [ "$(q "$DB" "SELECT count(*) FROM runs WHERE status = 'running'")" != 1 ]; do
            sleep 0.1; i=$((i + 1))
        done
        sleep 1
        kill -$sig $pid
        wait $pid
        rc=$?
        last=$(q "$DB" "SELECT max(id) FROM runs")
        if [ $sig = TERM ]; then
            ok "SIGTERM: analyze exits 1" '[ $rc -eq 1 ]'
            ok "SIGTERM: the run is marked failed, with the reason" \
                '[ "$(q "$DB" "SELECT status FROM runs WHERE id = $last")" = failed ] && q "$DB" "SELECT error FROM runs WHERE id = $last" | grep -q interrupted'
        else
            ok "SIGKILL: the run stays marked running" '[ "$(q "$DB" "SELECT status FROM runs WHERE id = $last")" = running ]'
        fi
        ok "SIG$sig: no results of the interrupted run" '[ "$(q "$DB" "SELECT count(*) FROM curvature WHERE run_id = $last")" = 0 ]'
        ok "SIG$sig: the file passes integrity_check, earlier runs intact" \
            '[ "$(q "$DB" "PRAGMA integrity_check")" = ok ] && [ "$(q "$DB" "SELECT count(*) FROM curvature WHERE run_id = 1")" -ge 30 ]'
    done

    # The README's example queries return rows on the README's analysis.
    RDB=$tmp/readme.db
    "$CS" analyze $REAL --samples 300 --db "$RDB" --spectrum hessian,ggn --lanczos-steps 10 --probes 3 >/dev/null 2>&1
    awk '/^```sql$/ { s = 1; q = ""; next } /^```$/ && s { print q; s = 0; next } s { q = q " " $0 }' \
        "$top_srcdir/README.md" >"$tmp/queries"
    count=$(wc -l <"$tmp/queries")
    ok "the README has at least six example queries ($count)" '[ "$count" -ge 6 ]'
    i=0
    while IFS= read -r sql; do
        i=$((i + 1))
        rows=$(sqlite3 "$RDB" "$sql" 2>&1 | wc -l)
        ok "README query $i returns rows ($rows)" '[ "$rows" -ge 1 ] && ! sqlite3 "$RDB" "$sql" 2>&1 | grep -q "^Error"'
    done <"$tmp/queries"
else
    skip "Fashion-MNIST not found in $FASHION_MNIST_DIR: interrupted runs and README queries"
fi

# EK-FAC: a second pass over the data; stored like the other representations,
# scored against the exact block, and never worse than K-FAC there.
EDB=$tmp/ekfac.db
"$CS" analyze $TINY --db "$EDB" --curvature ggn --repr full,kfac,ekfac >"$tmp/eout" 2>"$tmp/eerr"
rc=$?
ok "analyze --repr full,kfac,ekfac exits 0" '[ $rc -eq 0 ]'
ok "ekfac rows for the Conv and Gemm layers, a note for the BatchNormalization" \
    '[ "$(q "$EDB" "SELECT count(*) FROM curvature WHERE repr = '\''ekfac'\'' AND curvature = '\''ggn'\''")" = 2 ] && grep -q "no EK-FAC representation" "$tmp/eout"'
worse=$(q "$EDB" "SELECT count(*) FROM repr_comparison e JOIN repr_comparison k ON k.layer_id = e.layer_id AND k.curvature = e.curvature AND k.repr = 'kfac' WHERE e.repr = 'ekfac' AND e.rel_frobenius_error > k.rel_frobenius_error * (1 + 1e-9) + 1e-12")
scored=$(q "$EDB" "SELECT count(*) FROM repr_comparison WHERE repr = 'ekfac'")
ok "ekfac is scored on every layer ($scored) and never farther from the exact block than kfac ($worse worse)" \
    '[ "$scored" = 2 ] && [ "$worse" = 0 ]'
"$CS" analyze $TINY --db "$EDB" --curvature hessian --repr ekfac >"$tmp/hout" 2>&1
rc=$?
ok "hessian x ekfac alone is a usage error (exit 2, one line)" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/hout")" = 1 ]'

# Hessian diagonals above --max-full: exact by default, Hutchinson on request.
HDB=$tmp/hdiag.db
"$CS" analyze $TINY --db "$HDB" --curvature hessian --repr diag --max-full 10 --hessian-diag exact >"$tmp/hd1" 2>&1
rc1=$?
"$CS" analyze $TINY --db "$HDB" --curvature hessian --repr diag --max-full 10 --hessian-diag hutchinson \
    --probes 8 >"$tmp/hd2" 2>&1
rc2=$?
"$CS" analyze $TINY --db "$HDB" --curvature hessian --repr diag >"$tmp/hd3" 2>&1
rc3=$?
"$CS" analyze $TINY --db "$HDB" --curvature hessian --repr diag --max-full 45 >"$tmp/hd5" 2>&1
rc4=$?
ok "--hessian-diag exact, hutchinson and auto runs exit 0" '[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ $rc3 -eq 0 ] && [ $rc4 -eq 0 ]'
ok "auto: the 51-parameter fc above --max-full 45 (10 outputs) gets the exact diagonal" \
    '[ "$(q "$HDB" "SELECT method FROM curvature WHERE run_id = 4 AND repr = '\''diag'\'' AND layer_id = 2")" = exact ]'
ok "above --max-full 10 every layer's Hessian diagonal is exact with exact, hutchinson when asked (conv, fc)" \
    '[ "$(q "$HDB" "SELECT group_concat(DISTINCT method) FROM curvature WHERE run_id = 1 AND repr = '\''diag'\''")" = exact ] && [ "$(q "$HDB" "SELECT group_concat(DISTINCT method) FROM curvature WHERE run_id = 2 AND repr = '\''diag'\'' AND layer_id IN (0, 2)")" = hutchinson ]'
ok "the exact diagonal's traces equal those read off the full blocks (rel 1e-5)" \
    '[ "$(q "$HDB" "SELECT count(*) FROM curvature a JOIN curvature b ON b.layer_id = a.layer_id AND b.repr = '\''diag'\'' AND b.run_id = 3 WHERE a.run_id = 1 AND a.repr = '\''diag'\'' AND abs(a.trace - b.trace) <= 1e-5 * abs(b.trace)")" = "$(q "$HDB" "SELECT count(*) FROM curvature WHERE run_id = 3 AND repr = '\''diag'\''")" ]'
"$CS" analyze $TINY --db "$HDB" --curvature hessian --hessian-diag sometimes >"$tmp/hd4" 2>&1
rc=$?
ok "--hessian-diag sometimes is a usage error (exit 2, one line)" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/hd4")" = 1 ]'

echo "1..$n"
exit 0
