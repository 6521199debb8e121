#!/bin/sh
# curvscope influence end to end on the tiny MLP and its 12 fixture
# samples: the run is stored with its conventions, top-k rows of both signs
# per query and per training example, the full matrix only when asked,
# self-influence ranks and the mislabel view; bad options give one error
# line and exit 2.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
CS=$top_builddir/curvscope
M=$top_srcdir/tests/models/tiny_mlp64.onnx
X=npy:$top_srcdir/tests/fixtures/curv_tiny_mlp64_x.npy
Y=npy:$top_srcdir/tests/fixtures/curv_tiny_mlp64_y.npy

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_influence.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }
q() { sqlite3 "$tmp/i.db" "$1" 2>/dev/null; }
if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is missing"
    exit 0
fi

"$CS" influence "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 \
    --top-k 3 --damping 0.01 --db "$tmp/i.db" >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "influence exits 0 ($(head -c 300 "$tmp/err"))" '[ $rc -eq 0 ]'
ok "it says what it did" 'grep -q "influence of 12 training examples on 12 queries" "$tmp/out"'
ok "the run is done, kind influence" '[ "$(q "SELECT kind, status FROM runs")" = "influence|done" ]'
ok "damping, sign and loss scaling are stored" \
    '[ "$(q "SELECT count(*) FROM conventions WHERE key IN ('"'damping'"', '"'influence_sign'"', '"'influence_loss_scaling'"')")" = 3 ]'
ok "damping stored as given" '[ "$(q "SELECT value FROM conventions WHERE key = '"'damping'"'")" = 0.01 ]'
# 3 methods x 12 queries x 2 signs x 3 + the same per training example
ok "top-k rows per query and sign" \
    '[ "$(q "SELECT count(*) FROM influence_scores WHERE scope = '"'query'"'")" = 216 ]'
ok "top-k rows per training example and sign" \
    '[ "$(q "SELECT count(*) FROM influence_scores WHERE scope = '"'train'"'")" = 216 ]'
ok "no full matrix without --full-matrix" \
    '[ "$(q "SELECT count(*) FROM influence_scores WHERE scope = '"'full'"'")" = 0 ]'
ok "helpful rank 1 is the query's largest score" \
    '[ "$(q "SELECT count(*) FROM influence_scores AS a WHERE scope = '"'query'"' AND direction = '"'helpful'"' AND rank = 1 AND score < (SELECT max(score) FROM influence_scores AS b WHERE b.scope = '"'query'"' AND b.method = a.method AND b.query_index = a.query_index)")" = 0 ]'
ok "helpful scores are >= harmful ones of the same rank" \
    '[ "$(q "SELECT count(*) FROM influence_scores AS a JOIN influence_scores AS b USING (method, scope, query_index, rank) WHERE a.scope = '"'query'"' AND a.direction = '"'helpful'"' AND b.direction = '"'harmful'"' AND a.score < b.score")" = 0 ]'
ok "a query is its own most helpful example by cosine" \
    '[ "$(q "SELECT count(*) FROM influence_scores WHERE method = '"'cosine'"' AND scope = '"'query'"' AND direction = '"'helpful'"' AND rank = 1 AND query_index = train_index")" -ge 10 ]'
ok "self-influence for every example, ranks 1..12" \
    '[ "$(q "SELECT count(*), min(rank), max(rank), count(DISTINCT rank) FROM influence_self")" = "12|1|12|12" ]'
ok "self-influence is positive" '[ "$(q "SELECT count(*) FROM influence_self WHERE self_influence <= 0")" = 0 ]'
ok "the mislabel view lists them by rank with quantiles" \
    '[ "$(q "SELECT rank, quantile FROM v_mislabel_candidates LIMIT 1")" = "1|0.0833333333333333" ]'
ok "self-influence equals the ekfac score of the example on itself" \
    '[ "$(q "SELECT count(*) FROM influence_self AS s JOIN influence_scores AS f ON f.train_index = s.train_index AND f.query_index = s.train_index WHERE f.method = '"'ekfac'"' AND abs(f.score - s.self_influence) > 1e-9 * abs(s.self_influence)")" = 0 ]'

"$CS" influence "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 \
    --method dot --full-matrix --db "$tmp/i.db" >/dev/null 2>&1
ok "--full-matrix stores every pair" \
    '[ "$(q "SELECT count(*) FROM influence_scores WHERE run_id = 2 AND scope = '"'full'"'")" = 144 ]'
ok "--method dot stores dot only, and no self-influence" \
    '[ "$(q "SELECT group_concat(DISTINCT method), (SELECT count(*) FROM influence_self WHERE run_id = 2) FROM influence_scores WHERE run_id = 2")" = "dot|0" ]'

"$CS" influence "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 \
    --damping 0.01 --validate 4 --lds 3 --validate-epochs 5 --db "$tmp/i.db" >"$tmp/vout" 2>"$tmp/verr"
rc=$?
ok "--validate 4 --lds 3 exits 0 ($(head -c 300 "$tmp/verr"))" '[ $rc -eq 0 ]'
ok "it prints the correlations" 'grep -q "^leave-one-out ekfac: Pearson" "$tmp/vout" && grep -q "^LDS ekfac: " "$tmp/vout"'
ok "one validation row per method and kind" \
    '[ "$(q "SELECT count(*), count(DISTINCT method), count(DISTINCT kind) FROM influence_validation WHERE run_id = 3")" = "6|3|2" ]'
ok "leave-one-out rows: 3 methods x 4 examples x 12 queries, 4 distinct examples" \
    '[ "$(q "SELECT count(*), count(DISTINCT train_index) FROM influence_loo WHERE run_id = 3")" = "144|4" ]'
ok "LDS rows: 3 methods x 3 subsets x 12 queries, subsets of 6" \
    '[ "$(q "SELECT (SELECT count(*) FROM influence_lds WHERE run_id = 3), subset_size FROM influence_validation WHERE run_id = 3 AND kind = '"'lds'"' AND method = '"'dot'"'")" = "108|6" ]'
ok "the actual change is the same for every method" \
    '[ "$(q "SELECT count(*) FROM influence_loo AS a JOIN influence_loo AS b USING (run_id, train_index, query_index) WHERE a.actual <> b.actual")" = 0 ]'
ok "the tuning is recorded" \
    '[ "$(q "SELECT count(*) FROM conventions WHERE run_id = 3 AND key = '"'influence_validation_tuning'"' AND value LIKE '"'%5 steps%'"'")" = 1 ]'
# TracIn (Pruthi et al. 2020): with the model itself as the one checkpoint
# and lr 1 it is the gradient dot product; over two checkpoints it is the
# lr-weighted sum of each checkpoint's dot products (runs 4 and 5 give the
# second checkpoint's), and its self-influence the weighted sum of |g_m|^2.
ck=$tmp/ck2.onnx
"$CS" finetune "$M" --data "$X" --labels "$Y" --samples 12 --precond sgd --lr 0.5 --epochs 3 --batch 4 \
    --out "$ck" --db "$tmp/ft.db" >/dev/null 2>"$tmp/fterr"
ok "a second checkpoint by finetune ($(head -c 200 "$tmp/fterr"))" '[ -s "$ck" ]'
"$CS" influence "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 \
    --method dot,tracin --checkpoints "$M" --full-matrix --db "$tmp/i.db" >/dev/null 2>"$tmp/err"
ok "tracin over the model itself, lr 1 (default), runs ($(head -c 200 "$tmp/err"))" \
    '[ "$(q "SELECT count(*) FROM influence_scores WHERE run_id = 4 AND method = '"'tracin'"' AND scope = '"'full'"'")" = 144 ]'
ok "... and equals the dot product on every pair" \
    '[ "$(q "SELECT count(*) FROM influence_scores AS t JOIN influence_scores AS d USING (run_id, scope, query_index, train_index) WHERE t.run_id = 4 AND t.scope = '"'full'"' AND t.method = '"'tracin'"' AND d.method = '"'dot'"' AND abs(t.score - d.score) <= 1e-12 * (1 + abs(d.score))")" = 144 ]'
"$CS" influence "$ck" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 \
    --method dot --full-matrix --db "$tmp/i.db" >/dev/null 2>&1
"$CS" influence "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 \
    --method tracin --checkpoints "$M,$ck" --checkpoint-lr 0.5,0.25 --full-matrix --db "$tmp/i.db" \
    >/dev/null 2>"$tmp/err"
ok "tracin over two checkpoints runs ($(head -c 200 "$tmp/err"))" \
    '[ "$(q "SELECT kind, status FROM runs WHERE id = 6")" = "influence|done" ]'
ok "... and is 0.5 dot(model) + 0.25 dot(checkpoint 2) on every pair" \
    '[ "$(q "SELECT count(*) FROM influence_scores AS t JOIN influence_scores AS a USING (scope, query_index, train_index) JOIN influence_scores AS b USING (scope, query_index, train_index) WHERE t.run_id = 6 AND a.run_id = 4 AND b.run_id = 5 AND t.scope = '"'full'"' AND a.method = '"'dot'"' AND b.method = '"'dot'"' AND abs(t.score - (0.5 * a.score + 0.25 * b.score)) <= 1e-9 * (1 + abs(t.score))")" = 144 ]'
ok "its self-influence is the weighted sum of the squared gradient norms" \
    '[ "$(q "SELECT count(*) FROM influence_self AS s JOIN influence_scores AS a ON a.train_index = s.train_index AND a.query_index = s.train_index JOIN influence_scores AS b ON b.train_index = s.train_index AND b.query_index = s.train_index WHERE s.run_id = 6 AND a.run_id = 4 AND b.run_id = 5 AND a.method = '"'dot'"' AND b.method = '"'dot'"' AND a.scope = '"'full'"' AND b.scope = '"'full'"' AND abs(s.self_influence - (0.5 * a.score + 0.25 * b.score)) <= 1e-9 * abs(s.self_influence)")" = 12 ]'
ok "the conventions name the checkpoints, their lrs and the self-influence method" \
    '[ "$(q "SELECT group_concat(value, '"'|'"') FROM (SELECT value FROM conventions WHERE run_id = 6 AND key IN ('"'tracin_lr.1'"', '"'tracin_lr.2'"', '"'influence_self_method'"') ORDER BY key)")" = "tracin|0.5|0.25" ] && [ "$(q "SELECT value FROM conventions WHERE run_id = 6 AND key = '"'tracin_checkpoint.2'"'")" = "$ck" ]'

bad() {
    "$CS" influence "$@" >"$tmp/bo" 2>"$tmp/be"
    rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/be")" -eq 1 ] && [ ! -s "$tmp/bo" ]
}
ok "missing --query-data: one line, exit 2" 'bad "$M" --data "$X" --labels "$Y" --db "$tmp/b.db"'
ok "missing --db: one line, exit 2" 'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y"'
ok "unknown method: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --db "$tmp/b.db" --method tracin,x'
ok "--inverse kfac refused: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --db "$tmp/b.db" --inverse kfac'
ok "query data of the wrong shape: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "npy:$top_srcdir/tests/fixtures/curv_tiny_mlp64_y.npy" --query-labels "$Y" --db "$tmp/b.db"'
ok "tracin without --checkpoints: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --db "$tmp/b.db" --method tracin'
ok "--checkpoints without tracin: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --db "$tmp/b.db" --checkpoints "$M"'
ok "three lrs for two checkpoints: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --db "$tmp/b.db" --method tracin --checkpoints "$M,$ck" --checkpoint-lr 1,2,3'
ok "a checkpoint of another network: one line naming it, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --db "$tmp/b.db" --method tracin --checkpoints "$M,$top_srcdir/tests/models/tiny_cnn64.onnx" && grep -q "checkpoint 2" "$tmp/be"'
ok "--validate 0: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 --db "$tmp/b.db" --validate 0'
ok "--validate K above the training examples: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 --db "$tmp/b.db" --validate 13'
ok "--lds-fraction 1: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 --db "$tmp/b.db" --lds 3 --lds-fraction 1'
ok "--validate-lr 0: one line, exit 2" \
    'bad "$M" --data "$X" --labels "$Y" --query-data "$X" --query-labels "$Y" --samples 12 --db "$tmp/b.db" --validate 2 --validate-lr 0'
echo "1..$n"
