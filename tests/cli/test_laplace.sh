#!/bin/sh
# curvscope laplace end to end: the fit of the bundled tiny_mlp64 lands in
# laplace_fits / laplace_priors with its conventions and agrees with the
# float64 reference (tests/fixtures/laplace_tiny_mlp64.txt), the optimised
# prior beats a fixed one, kfac runs on the Fashion-MNIST mlp, the
# predictives (nn_mc included) are stored as asked, the linearised predictive
# lowers the MAP model's NLL on rotated Fashion-MNIST test images, and the
# error paths print one line and exit 2.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
MODELS=$top_srcdir/tests/models
FIX=$top_srcdir/tests/fixtures

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_laplace.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }
q() { sqlite3 "$1" "$2" 2>/dev/null; }
if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is missing"
    exit 0
fi
TINY="$MODELS/tiny_mlp64.onnx --data npy:$FIX/curv_tiny_mlp64_x.npy --labels npy:$FIX/curv_tiny_mlp64_y.npy"
DB=$tmp/la.db
# the reference's value of a record (first value)
ref() { awk -v k="$1" '$1 == "vector" && $2 == k { getline; print $1 }' "$FIX/laplace_tiny_mlp64.txt"; }
relclose() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= 1e-4 * m) }'; }

for r in diag kfac full; do
    "$CS" laplace $TINY --repr $r --db "$DB" --threads 1 >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "laplace --repr $r exits 0" '[ $rc -eq 0 ]'
    got=$(q "$DB" "SELECT printf('%.15g', log_marglik) FROM laplace_fits f JOIN runs r ON r.id = f.run_id
                   WHERE f.repr = '$r' AND r.status = 'done' AND r.kind = 'laplace' ORDER BY f.run_id DESC LIMIT 1")
    want=$(ref ${r}_all_layer)
    ok "$r: stored log marginal likelihood $got = reference $want (1e-4 rel)" 'relclose "$got" "$want"'
done
ok "one laplace_priors row per layer and run" \
    '[ "$(q "$DB" "SELECT count(*) FROM laplace_priors")" = 6 ]'
ok "priors per layer: prior_precision NULL in laplace_fits" \
    '[ "$(q "$DB" "SELECT count(*) FROM laplace_fits WHERE prior_mode = '"'layer'"' AND prior_precision IS NULL")" = 3 ]'
ok "the curvature scaling is recorded as a convention" \
    '[ "$(q "$DB" "SELECT count(*) FROM conventions WHERE key = '"'laplace_curvature_scaling'"'")" = 3 ]'

"$CS" laplace $TINY --repr full --subset last-layer --prior-precision 0.5 --db "$DB" >/dev/null 2>&1
fixed=$(q "$DB" "SELECT log_marglik FROM laplace_fits WHERE prior_mode = 'fixed'")
ok "fixed prior, last layer: $fixed = reference" 'relclose "$fixed" "$(ref full_last_fixed)"'
"$CS" laplace $TINY --repr full --subset last-layer --optimize-prior scalar --db "$DB" >/dev/null 2>&1
best=$(q "$DB" "SELECT log_marglik FROM laplace_fits WHERE prior_mode = 'scalar'")
ok "the optimised prior's evidence ($best) exceeds the fixed one's ($fixed)" \
    'awk -v a="$best" -v b="$fixed" "BEGIN { exit !(a > b) }"'
"$CS" laplace $TINY --repr kfac --json --db "$DB" >"$tmp/json" 2>&1
ok "--json names the log marginal likelihood and the priors" 'grep -q "\"log_marglik\": .*\"priors\": {\"fc1\"" "$tmp/json"'

# predictives: on the training set itself the MAP model's NLL is the mean ce loss
"$CS" laplace $TINY --repr kfac --test-data npy:$FIX/curv_tiny_mlp64_x.npy --test-labels npy:$FIX/curv_tiny_mlp64_y.npy \
    --db "$tmp/p.db" >/dev/null 2>&1
rc=$?
ok "laplace --test-data exits 0" '[ $rc -eq 0 ]'
ok "three predictives stored" '[ "$(q "$tmp/p.db" "SELECT group_concat(method) FROM (SELECT method FROM laplace_predictive ORDER BY method)")" = glm_mc,glm_probit,map ]'
mapnll=$(q "$tmp/p.db" "SELECT printf('%.15g', nll) FROM laplace_predictive WHERE method = 'map'")
ok "MAP NLL $mapnll = -loglik / 12 of the reference" 'relclose "$mapnll" "$(awk -v l="$(ref loglik)" "BEGIN { printf \"%.17g\", -l / 12 }")"'

# the network predictive: --predictive chooses, --mc-predictive sets its weight samples
"$CS" laplace $TINY --repr kfac --test-data npy:$FIX/curv_tiny_mlp64_x.npy --test-labels npy:$FIX/curv_tiny_mlp64_y.npy \
    --predictive map,nn_mc --mc-predictive 30 --db "$tmp/nn.db" >"$tmp/out" 2>&1
rc=$?
ok "laplace --predictive map,nn_mc exits 0" '[ $rc -eq 0 ]'
ok "just map and nn_mc stored" '[ "$(q "$tmp/nn.db" "SELECT group_concat(method) FROM (SELECT method FROM laplace_predictive ORDER BY method)")" = map,nn_mc ]'
ok "nn_mc printed" 'grep -q "^nn_mc " "$tmp/out"'
nn1=$(q "$tmp/nn.db" "SELECT printf('%.17g', nll) FROM laplace_predictive WHERE method = 'nn_mc'")
"$CS" laplace $TINY --repr kfac --test-data npy:$FIX/curv_tiny_mlp64_x.npy --test-labels npy:$FIX/curv_tiny_mlp64_y.npy \
    --predictive nn_mc --mc-predictive 30 --db "$tmp/nn2.db" >/dev/null 2>&1
nn2=$(q "$tmp/nn2.db" "SELECT printf('%.17g', nll) FROM laplace_predictive WHERE method = 'nn_mc'")
ok "nn_mc is seeded: the same NLL twice ($nn1, $nn2)" '[ -n "$nn1" ] && [ "$nn1" = "$nn2" ]'
"$CS" laplace $TINY --repr diag --subset last-layer --test-data npy:$FIX/curv_tiny_mlp64_x.npy \
    --test-labels npy:$FIX/curv_tiny_mlp64_y.npy --predictive all --db "$tmp/all.db" >/dev/null 2>&1
ok "--predictive all over the last layer stores four predictives" \
    '[ "$(q "$tmp/all.db" "SELECT count(DISTINCT method) FROM laplace_predictive")" = 4 ]'

# error paths: one line on stderr, exit 2
err_case() {
    "$CS" laplace $TINY --db "$tmp/e.db" "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    ok "laplace $* exits 2 with one line" '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]'
}
err_case --repr unit
err_case --curvature hessian
err_case --subset first
err_case --optimize-prior both
err_case --prior-precision 1 --optimize-prior scalar
err_case --loss mse
err_case --repr full --max-full 10
err_case --test-data npy:$FIX/curv_tiny_mlp64_x.npy
err_case --test-data npy:$FIX/curv_tiny_mlp64_x.npy --test-labels npy:$FIX/curv_tiny_mlp64_y.npy --predictive map,nn
"$CS" laplace $TINY >/dev/null 2>"$tmp/err"
rc=$?
ok "no --db: exit 2" '[ $rc -eq 2 ]'

IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
if [ -f "$IMG" ]; then
    "$CS" laplace "$MODELS/mlp.onnx" --data idx:$IMG --labels idx:$LAB --samples 1000 --scale 1/255 \
        --mean 0.2860 --std 0.3530 --db "$DB" --threads 1 >/dev/null 2>"$tmp/err"
    rc=$?
    ok "kfac over all 52650 parameters of the Fashion-MNIST mlp" \
        '[ $rc -eq 0 ] && [ "$(q "$DB" "SELECT n_params FROM laplace_fits ORDER BY run_id DESC LIMIT 1")" = 52650 ]'

    # a shifted test set: the first 1000 test images rotated by 45 degrees
    # (tests/bayes/shift_images, bilinear); the linearised predictive of the
    # last layer's K-FAC posterior (prior optimised, the defaults otherwise)
    # lowers the MAP model's NLL there
    "$top_builddir/tests/bayes/shift_images" idx:$FASHION_MNIST_DIR/t10k-images-idx3-ubyte.gz \
        idx:$FASHION_MNIST_DIR/t10k-labels-idx1-ubyte.gz 1000 45 "$tmp/rot_x.npy" "$tmp/rot_y.npy"
    rc=$?
    ok "shifted test set: 1000 test images rotated by 45 degrees" '[ $rc -eq 0 ]'
    "$CS" laplace "$MODELS/mlp.onnx" --data idx:$IMG --labels idx:$LAB --samples 1000 --scale 1/255 \
        --mean 0.2860 --std 0.3530 --repr kfac --subset last-layer --test-data npy:$tmp/rot_x.npy \
        --test-labels npy:$tmp/rot_y.npy --predictive all --db "$tmp/shift.db" --threads 1 >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "laplace on the shifted set exits 0" '[ $rc -eq 0 ]'
    nll() { q "$tmp/shift.db" "SELECT printf('%.6f', nll) FROM laplace_predictive WHERE method = '$1'"; }
    map=$(nll map)
    for m in glm_probit glm_mc; do
        got=$(nll $m)
        ok "rotated test set: $m NLL $got < map NLL $map" \
            '[ -n "$got" ] && awk -v a="$got" -v b="$map" "BEGIN { exit !(a < b) }"'
    done
    echo "# rotated 45 degrees, kfac last layer: NLL map $map, glm_probit $(nll glm_probit), glm_mc $(nll glm_mc), nn_mc $(nll nn_mc)"
fi
echo "1..$n"
