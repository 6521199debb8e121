#!/bin/sh
# Data parallelism under mpirun (doc/design.md §2.12): mpirun -np 1, 2 and 4
# give the single process's results within 1e-6 relative (eval's loss and
# gradient; analyze's stored K-FAC factors, diagonals and Lanczos
# eigenvalues; finetune's weights), rank 0 alone writes, and an error on one
# rank ends every rank with the message printed once.  Skipped in a build
# without MPI or without mpirun.  Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"
MPIRUN=${MPIRUN:-$(command -v mpirun)}

if [ "${CS_HAVE_MPI:-no}" != yes ]; then
    echo "1..0 # SKIP built without MPI (configure --with-mpi)"
    exit 0
fi
if [ -z "$MPIRUN" ] || [ ! -x "$MPIRUN" ]; then
    echo "1..0 # SKIP mpirun is not installed"
    exit 0
fi
if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is not installed"
    exit 0
fi

# Open MPI refuses root without these, and 4 ranks on 2 cores need
# --oversubscribe; one thread per rank keeps the machine responsive.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { np=$1; shift; timeout 300 "$MPIRUN" --oversubscribe -np "$np" "$@"; }

# Relative agreement of two numbers lists (one per line), within 1e-6 of
# the larger magnitude (and 1e-12 absolute for zeros).
close() {
    [ -s "$1" ] && [ "$(wc -l <"$1")" = "$(wc -l <"$2")" ] &&
        paste "$1" "$2" | awk -F'\t' '{ a = $1 + 0; b = $2 + 0; d = a - b; if (d < 0) d = -d;
            m = a < 0 ? -a : a; if ((b < 0 ? -b : b) > m) m = (b < 0 ? -b : b);
            if (d > 1e-6 * m + 1e-12) bad = 1 } END { exit bad }'
}
# A JSON number field's value.
field() { sed -n "s/.*\"$2\": \([-+0-9.eE]*\).*/\1/p" "$1"; }

TINY_X=$FX/curv_tiny_cnn64_x.npy
TINY_Y=$FX/curv_tiny_cnn64_y.npy
TINY="$MODELS/tiny_cnn64.onnx --data npy:$TINY_X --labels npy:$TINY_Y"

# ---- eval ----
"$CS" eval $TINY --grad --json >"$tmp/e1.json" 2>"$tmp/e1.err"
for np in 1 2 4; do
    mpi $np "$CS" eval $TINY --grad --json >"$tmp/e$np.mpi.json" 2>"$tmp/e$np.mpi.err"
    for k in loss accuracy grad_norm; do
        field "$tmp/e1.json" $k >"$tmp/a"; field "$tmp/e$np.mpi.json" $k >"$tmp/b"
        ok "eval -np $np: $k equals the single process's" 'close "$tmp/a" "$tmp/b"'
    done
    ok "eval -np $np: one JSON line (rank 0 alone prints)" '[ "$(wc -l <"$tmp/e$np.mpi.json")" = 1 ]'
    ok "eval -np $np: samples is the whole count" '[ "$(field "$tmp/e$np.mpi.json" samples)" = 12 ]'
done

# ---- an error on one rank: the last sample's label is out of range, so
# only the last rank's slice holds it ----
head -c -8 "$TINY_Y" >"$tmp/bad_y.npy" && printf '\143\0\0\0\0\0\0\0' >>"$tmp/bad_y.npy"
mpi 4 "$CS" eval "$MODELS/tiny_cnn64.onnx" --data npy:"$TINY_X" --labels npy:"$tmp/bad_y.npy" \
    >"$tmp/bad.out" 2>"$tmp/bad.err"
rc=$?
ok "eval with a bad label on the last rank fails everywhere (exit 2)" '[ $rc -eq 2 ]'
ok "the error is printed once" '[ "$(grep -c "curvscope: error:" "$tmp/bad.err")" = 1 ]'
ok "the error names the label" 'grep "curvscope: error:" "$tmp/bad.err" | grep -q 99'
ok "nothing on standard output" '[ ! -s "$tmp/bad.out" ]'

# ---- analyze: K-FAC factors, diagonals, exact blocks, Lanczos ----
AN="--curvature hessian,ggn,fisher_emp --repr full,kfac,diag,unit,ekfac --spectrum ggn,hessian --lanczos-steps 10 --importance"
"$CS" analyze $TINY $AN --db "$tmp/a1.db" >/dev/null 2>"$tmp/a1.err"
ok "analyze in one process" '[ "$(q "$tmp/a1.db" "SELECT status FROM runs")" = done ]'
# name|SQL: the stored numbers compared, in a fixed order
checks="kfac factors|SELECT value FROM kfac_factors ORDER BY layer_id, curvature, factor, k
eigenvalues (full, kfac, ekfac, unit)|SELECT value FROM eigenvalues ORDER BY layer_id, curvature, repr, method, k
ggn diagonal|SELECT diag_ggn FROM importance ORDER BY param_id, flat_index
empirical Fisher diagonal|SELECT diag_fisher_emp FROM importance ORDER BY param_id, flat_index
hessian diagonal|SELECT diag_hessian FROM importance ORDER BY param_id, flat_index
Lanczos Ritz values|SELECT value FROM ritz_values ORDER BY curvature, 1
lambda_max and trace per result|SELECT lambda_max, trace FROM curvature ORDER BY layer_id, curvature, repr"
for np in 1 2 4; do
    mpi $np "$CS" analyze $TINY $AN --db "$tmp/a$np.mpi.db" >"$tmp/a$np.out" 2>"$tmp/a$np.err"
    ok "analyze -np $np: done, 12 samples" '[ "$(q "$tmp/a$np.mpi.db" "SELECT status, n_samples FROM runs")" = "done|12" ]'
    echo "$checks" | while IFS='|' read -r what sql; do
        q "$tmp/a1.db" "$sql" | tr '|' '\n' >"$tmp/x1"; q "$tmp/a$np.mpi.db" "$sql" | tr '|' '\n' >"$tmp/x2"
        if close "$tmp/x1" "$tmp/x2"; then echo ok; else echo "not ok"; fi >"$tmp/r"
        echo "$(cat "$tmp/r") $what" >>"$tmp/a$np.checks"
    done
    while read -r res what; do
        ok "analyze -np $np: $what equal to the single process's" '[ "$res" = ok ]'
    done <"$tmp/a$np.checks"
    ok "analyze -np $np: one summary line (rank 0 alone prints)" '[ "$(grep -c "results in" "$tmp/a$np.out")" = 1 ]'
done
# Rank 0 alone writes: the other ranks keep an in-memory database.
ls "$tmp" >"$tmp/files.before"
mpi 2 "$CS" analyze $TINY --db "$tmp/only0.db" >/dev/null 2>&1
ok "analyze -np 2: one database file, one run in it" '[ "$(q "$tmp/only0.db" "SELECT count(*) FROM runs")" = 1 ]'
ok "analyze -np 2: no other file appears" '[ "$(ls "$tmp" | grep -v -x -F -f "$tmp/files.before" | grep -v "^only0.db")" = "" ]'
# A bad --db (a directory) on rank 0 only: every rank stops, one message.
mkdir "$tmp/dir.db"
mpi 2 "$CS" analyze $TINY --db "$tmp/dir.db" >"$tmp/dir.out" 2>"$tmp/dir.err"
rc=$?
ok "analyze -np 2 with --db a directory fails" '[ $rc -ne 0 ]'
ok "its error is printed once" '[ "$(grep -c "curvscope: error:" "$tmp/dir.err")" = 1 ]'

# ---- finetune: data-parallel steps ----
# The weights are compared through what they determine: every step's
# loss and accuracy (stored), the epoch's train loss, and the gradient of
# the tuned model over the data (eval --grad-out, float64 .npy: its data
# starts after a header padded to a multiple of 64 bytes).
npy_values() { od -A n -v -t f8 -j "$(($(od -A n -t u2 -j 8 -N 2 "$1") + 10))" "$1" | tr -s ' ' '\n' | sed '/^$/d'; }
FT="--batch 4 --epochs 2 --seed 3 --log-every 1"
for pc in sgd adamw kfac; do
    cur=""; [ $pc = kfac ] && cur="--curvature ggn"
    "$CS" finetune $TINY $FT --precond $pc $cur --out "$tmp/f1.onnx" --db "$tmp/f1$pc.db" >/dev/null 2>&1
    "$CS" eval "$tmp/f1.onnx" --data npy:"$TINY_X" --labels npy:"$TINY_Y" --grad-out "$tmp/g1.npy" >/dev/null 2>&1
    npy_values "$tmp/g1.npy" >"$tmp/g1"
    q "$tmp/f1$pc.db" "SELECT loss, accuracy FROM finetune_steps ORDER BY step" | tr '|' '\n' >"$tmp/s1"
    q "$tmp/f1$pc.db" "SELECT loss FROM finetune_evals ORDER BY epoch, split" >"$tmp/v1"
    for np in 2 4; do
        rm -f "$tmp/f$np.onnx"
        mpi $np "$CS" finetune $TINY $FT --precond $pc $cur --out "$tmp/f$np.onnx" --db "$tmp/f$np$pc.db" \
            >/dev/null 2>"$tmp/f$np.err"
        "$CS" eval "$tmp/f$np.onnx" --data npy:"$TINY_X" --labels npy:"$TINY_Y" --grad-out "$tmp/g$np.npy" \
            >/dev/null 2>&1
        npy_values "$tmp/g$np.npy" >"$tmp/g$np"
        q "$tmp/f$np$pc.db" "SELECT loss, accuracy FROM finetune_steps ORDER BY step" | tr '|' '\n' >"$tmp/s$np"
        q "$tmp/f$np$pc.db" "SELECT loss FROM finetune_evals ORDER BY epoch, split" >"$tmp/v$np"
        ok "finetune $pc -np $np: 6 steps, each loss and accuracy equal to the single process's" \
            '[ "$(q "$tmp/f$np$pc.db" "SELECT count(*) FROM finetune_steps")" = 6 ] && close "$tmp/s1" "$tmp/s$np"'
        ok "finetune $pc -np $np: the epochs' train losses equal" 'close "$tmp/v1" "$tmp/v$np"'
        ok "finetune $pc -np $np: the tuned model's gradient equal (the weights)" \
            '[ "$(wc -l <"$tmp/g1")" = 99 ] && close "$tmp/g1" "$tmp/g$np"'
        ok "finetune $pc -np $np: the tuned model has the single process's size" \
            '[ "$(wc -c <"$tmp/f1.onnx")" = "$(wc -c <"$tmp/f$np.onnx")" ]'
    done
done
mpi 4 "$CS" finetune $TINY --batch 5 --epochs 1 --precond sgd --out "$tmp/b.onnx" --db "$tmp/b.db" \
    >/dev/null 2>"$tmp/b.err"
rc=$?
ok "finetune -np 4 with a last batch of 2 samples is refused, once" \
    '[ $rc -eq 2 ] && [ "$(grep -c "every batch needs at least 4 samples" "$tmp/b.err")" = 1 ] && [ ! -e "$tmp/b.onnx" ]'

# ---- info runs on rank 0 alone ----
"$CS" info "$MODELS/tiny_cnn64.onnx" >"$tmp/i1" 2>&1
mpi 2 "$CS" info "$MODELS/tiny_cnn64.onnx" >"$tmp/i2" 2>&1
ok "info -np 2 prints what one process prints, once" '[ -s "$tmp/i1" ] && cmp -s "$tmp/i1" "$tmp/i2"'

echo "1..$n"
