#!/bin/sh
# curvscope report on the bundled CNN: an analyze run with every section
# (spectra, importance, pruning, steps), two finetune runs and a laplace run
# of tiny_mlp64 (its section only once there is one) in one file
# give one self-contained HTML page with every expected figure; Chromium
# (when installed: .ci/run installs it) renders it headless to PNG and its
# DOM holds every figure with SVG content.  Error paths give one line and
# leave no file.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
MODELS=$top_srcdir/tests/models

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_report.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }

IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
if [ ! -f "$IMG" ]; then
    echo "1..0 # SKIP Fashion-MNIST is missing"
    exit 0
fi
DATA="--data idx:$IMG --labels idx:$LAB --scale 1/255 --mean 0.2860 --std 0.3530 --samples 128"
DB=$tmp/cnn.db
"$CS" analyze "$MODELS/cnn.onnx" $DATA --db "$DB" --curvature ggn,hessian --repr full,kfac,diag \
    --spectrum hessian --lanczos-steps 12 --probes 2 --importance --prune-check 0.1,0.5 \
    --precond sgd,diag,kfac --damping 0.01,0.1 >/dev/null 2>"$tmp/err"
rc=$?
ok "analyze with every section" '[ $rc -eq 0 ]'
for p in sgd kfac; do
    "$CS" finetune "$MODELS/cnn.onnx" $DATA --precond $p --log-every 1 --out "$tmp/$p.onnx" --db "$DB" >/dev/null 2>&1
    rc=$?
    ok "finetune $p into the same file" '[ $rc -eq 0 ]'
done
"$CS" report "$DB" --html "$tmp/nola.html" >/dev/null 2>&1
ok "no laplace run: no Laplace section" '[ -s "$tmp/nola.html" ] && ! grep -q "id=\"sec-laplace\"" "$tmp/nola.html"'
TX=npy:$top_srcdir/tests/fixtures/curv_tiny_mlp64_x.npy
TY=npy:$top_srcdir/tests/fixtures/curv_tiny_mlp64_y.npy
"$CS" laplace "$MODELS/tiny_mlp64.onnx" --data $TX --labels $TY --repr diag --test-data $TX --test-labels $TY \
    --predictive all --db "$DB" >/dev/null 2>&1
rc=$?
ok "laplace with every predictive into the same file" '[ $rc -eq 0 ]'
HTML=$tmp/report.html
rm -f "$tmp/x.html"
"$CS" report "$DB" --html "$HTML" >"$tmp/out" 2>"$tmp/err"
rc=$?
ok "report exits 0 and writes the page" '[ $rc -eq 0 ] && [ -s "$HTML" ]'

ids="fig-eigdecay-0 fig-eigdecay-1 fig-eigdecay-2 fig-eigdecay-3 fig-eigdecay-4 fig-density fig-lambda-max
     fig-trace fig-condition fig-importance-hist fig-pruning-loss fig-pruning-acc fig-finetune-loss fig-finetune-acc
     fig-laplace-nll fig-laplace-ece"
missing=""
for id in $ids; do
    grep -q "<svg id=\"$id\"" "$HTML" || missing="$missing $id"
done
ok "every expected figure is in the page${missing:+ (missing:$missing)}" '[ -z "$missing" ]'
ok "the run and step tables, with the best step highlighted" \
    'grep -q "id=\"tbl-run\"" "$HTML" && grep -q "id=\"tbl-steps\"" "$HTML" && grep -q "<tr class=\"best\">" "$HTML"'
ok "the Laplace table and the four predictives' bars" \
    'grep -q "id=\"tbl-laplace\"" "$HTML" && [ "$(sed -n "/<svg id=\"fig-laplace-nll\"/,/<\/svg>/p" "$HTML" | grep -c ">nn_mc<\|>map<\|>glm_probit<\|>glm_mc<")" -ge 4 ]'
ok "axes are labelled" 'grep -q ">eigenvalue (log scale)<" "$HTML" && grep -q ">fraction of weights zeroed<" "$HTML"'
ok "self-contained: no script, nothing fetched" \
    '! grep -qi "<script" "$HTML" && [ "$(grep -o "https\?://[^\"]*" "$HTML" | grep -vc "^http://www.w3.org/2000/svg$")" -eq 0 ]'

# A file of schema version 1 (what an older curvscope wrote): the tables of
# version 2 are not there, and the report leaves their sections out.
if command -v sqlite3 >/dev/null 2>&1; then
    cp "$DB" "$tmp/v1.db"
    drops=$(sqlite3 "$tmp/v1.db" "SELECT group_concat('DROP ' || type || ' ' || name, '; ') FROM sqlite_master
        WHERE name IN ('noise_scale', 'comparisons', 'comparison_methods', 'comparison_epochs', 'v_comparison',
        'finetune_penalty', 'v_forgetting', 'hessian_traces', 'quant_sensitivity', 'quant_allocation',
        'quant_result', 'laplace_fits', 'laplace_priors', 'laplace_predictive', 'influence_scores',
        'influence_self', 'v_mislabel_candidates') ORDER BY type = 'table'")
    sqlite3 "$tmp/v1.db" "$drops; PRAGMA user_version = 1"
    "$CS" report "$tmp/v1.db" --html "$tmp/v1.html" >/dev/null 2>"$tmp/err"
    rc=$?
    ok "a version-1 file reports without the newer sections (exit $rc)" \
        '[ $rc -eq 0 ] && grep -q "<svg id=\"fig-density\"" "$tmp/v1.html" && [ "$(sqlite3 "$tmp/v1.db" "PRAGMA user_version")" = 1 ]'
else
    n=$((n + 1)); echo "ok $n # SKIP sqlite3 is not installed"
fi

"$CS" report "$tmp/none.db" --html "$tmp/x.html" >/dev/null 2>"$tmp/err"
rc=$?
ok "a missing database: exit non-zero, one line, no page" '[ $rc -ne 0 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/x.html" ]'
"$CS" report "$DB" --run 999 --html "$tmp/x.html" >/dev/null 2>"$tmp/err"
rc=$?
ok "an unknown run: exit 2, one line, no page" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && ! ls "$tmp"/x.html* >/dev/null 2>&1'
"$CS" report "$DB" >/dev/null 2>"$tmp/err"
rc=$?
ok "--html is required" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]'

CHROME=""
for c in chromium chromium-browser google-chrome; do
    command -v $c >/dev/null 2>&1 && { CHROME=$c; break; }
done
if [ -n "$CHROME" ]; then
    flags="--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --user-data-dir=$tmp/profile"
    timeout 120 $CHROME $flags --window-size=1100,3000 --screenshot="$tmp/report.png" "file://$HTML" >/dev/null 2>&1
    ok "$CHROME renders the page headless to PNG" '[ -s "$tmp/report.png" ] && [ "$(head -c 4 "$tmp/report.png" | od -An -c | tr -d " ")" = "211PNG" ]'
    timeout 120 $CHROME $flags --dump-dom "file://$HTML" >"$tmp/dom.html" 2>/dev/null
    ok "the browser loaded the whole page" 'grep -q "<h1>curvscope report</h1>" "$tmp/dom.html" && grep -q "</html>" "$tmp/dom.html"'
    empty=""
    for id in $ids; do
        # the figure's SVG, up to its closing tag, must draw something
        awk -v id="$id" 'index($0, "<svg id=\"" id "\"") { f = 1 } f { print } f && /<\/svg>/ { exit }' "$tmp/dom.html" |
            grep -q "<polyline\|<rect\|<circle" || empty="$empty $id"
    done
    ok "in the browser's DOM every figure has SVG content${empty:+ (empty:$empty)}" '[ -z "$empty" ]'
else
    for what in "renders to PNG" "loads the page" "figures in the DOM"; do
        n=$((n + 1)); echo "ok $n # SKIP Chromium is not installed ($what)"
    done
fi
echo "1..$n"
exit 0
