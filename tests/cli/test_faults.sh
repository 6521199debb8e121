#!/bin/sh
# Faults around curvscope's outputs (issue 18, item 3): analyze and finetune
# killed by SIGKILL at fixed and random moments leave the database passing
# integrity_check, earlier runs intact and the killed run not 'done' with
# no result rows; two analyze runs writing one database at once (a new file,
# then an existing one) both end 'done'; a read-only file or directory, a
# full disk (a file size limit) and foreign files are one-line errors with
# exit 2 that leave the file as it was; a killed or failed finetune leaves
# an existing --out model untouched and no temporary file.  Speaks TAP.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
CS=$top_builddir/curvscope
FX=$top_srcdir/tests/fixtures
MODELS=$top_srcdir/tests/models

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_faults.XXXXXX") || { echo "Bail out! no temp dir"; exit 1; }
trap 'chmod -R u+w "$tmp" 2>/dev/null; [ -n "$CS_FAULT_KEEP" ] || rm -rf "$tmp"' EXIT

n=0
ok() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
diag() { echo "# $*"; }
q() { sqlite3 "$1" "$2" 2>/dev/null; }
sum() { sha256sum "$1" | cut -c1-64; }

if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is not installed"
    exit 0
fi

TINY="$MODELS/tiny_cnn64.onnx --data npy:$FX/curv_tiny_cnn64_x.npy --labels npy:$FX/curv_tiny_cnn64_y.npy"
ALL="--curvature hessian,ggn,fisher_emp --repr full,kfac,diag,unit"

# exit 2, exactly one line on stderr
expect2() {
    desc=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok "$desc: exit 2 with one error line ($(head -c 200 "$tmp/err"))" \
        '[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]'
}

# What a reader filtering on status = 'done' sees, as one checksum.
done_view() {
    q "$1" "SELECT r.id, c.layer_id, c.curvature, c.repr, c.method, c.trace, c.lambda_max
            FROM curvature c JOIN runs r ON r.id = c.run_id WHERE r.status = 'done'
            ORDER BY 1, 2, 3, 4, 5;
            SELECT r.id, f.epoch, f.step, f.loss FROM finetune_steps f JOIN runs r ON r.id = f.run_id
            WHERE r.status = 'done' ORDER BY 1, 2, 3" | sha256sum | cut -c1-64
}

# After a kill: the file is sound, what was done is as it was, and no run
# other than the first $2 is done or has results.
check_after_kill() {
    db=$1 n_done=$2 view=$3 what=$4
    ok "$what: integrity_check ok" '[ "$(q "$db" "PRAGMA integrity_check")" = ok ]'
    ok "$what: the earlier runs are intact, as a reader of done runs sees them" \
        '[ "$(q "$db" "SELECT count(*) FROM runs WHERE status = '\''done'\''")" = "$n_done" ] && [ "$(done_view "$db")" = "$view" ]'
    ok "$what: the killed run is not done and has no results" \
        '[ "$(q "$db" "SELECT count(*) FROM runs WHERE id > $n_done AND status NOT IN ('\''running'\'', '\''failed'\'')")" = 0 ] &&
         [ "$(q "$db" "SELECT (SELECT count(*) FROM curvature WHERE run_id > $n_done) + (SELECT count(*) FROM finetune_steps WHERE run_id > $n_done) + (SELECT count(*) FROM eigenvalues WHERE run_id > $n_done)")" = 0 ]'
}

# Random delays in [0, 2) seconds, reproducible from the seed printed.
seed=${CS_FAULT_SEED:-$$}
diag "random kill delays from seed $seed (set CS_FAULT_SEED to repeat)"
plus=$(awk -v s="$seed" 'BEGIN { srand(s); for (i = 0; i < 5; i++) printf "+%.2f ", 2 * rand() }')

# For a delay "+T": wait (at most 20 s) until process $3 has committed its
# run row, a row with an id above $4.
wait_started() {
    case $2 in +*) ;; *) return 0 ;; esac
    i=0
    while [ $i -lt 200 ] && kill -0 "$3" 2>/dev/null; do
        c=$(q "$1" "SELECT count(*) FROM runs WHERE id > $4")
        [ "${c:-0}" != 0 ] && break
        sleep 0.1; i=$((i + 1))
    done
}

IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
if [ -f "$IMG" ]; then
    REAL="--data idx:$IMG --labels idx:$LAB --scale 1/255 --mean 0.2860 --std 0.3530"
    DB=$tmp/kill.db
    "$CS" analyze $TINY --db "$DB" $ALL >/dev/null 2>&1
    "$CS" finetune "$MODELS/mlp.onnx" $REAL --samples 512 --precond sgd --epochs 1 --out "$tmp/first.onnx" \
        --db "$DB" >/dev/null 2>&1
    ok "two finished runs to protect" '[ "$(q "$DB" "SELECT group_concat(status) FROM runs")" = done,done ]'
    view=$(done_view "$DB")
    # analyze: a run of tens of seconds, killed while loading, computing or
    # (rarely) writing.
    # Fixed delays count from the start, random ones ("+T") from the moment
    # the run row is committed, so that some kills land mid-computation.
    for t in 0.2 0.5 1 $plus; do
        last=$(q "$DB" "SELECT max(id) FROM runs")
        "$CS" analyze "$MODELS/cnn.onnx" $REAL --samples 3000 --db "$DB" >/dev/null 2>&1 &
        pid=$!
        wait_started "$DB" "$t" $pid "$last"
        sleep "${t#+}"
        kill -KILL $pid 2>/dev/null
        wait $pid 2>/dev/null
        check_after_kill "$DB" 2 "$view" "analyze killed after ${t}s"
    done
    # finetune: an existing --out is replaced only by a whole model.
    cp "$MODELS/mlp.onnx" "$tmp/tuned.onnx"
    for t in 0.3 1 $plus; do
        last=$(q "$DB" "SELECT max(id) FROM runs")
        "$CS" finetune "$MODELS/mlp.onnx" $REAL --samples 20000 --precond kfac --epochs 20 \
            --out "$tmp/tuned.onnx" --db "$DB" >/dev/null 2>&1 &
        pid=$!
        wait_started "$DB" "$t" $pid "$last"
        sleep "${t#+}"
        kill -KILL $pid 2>/dev/null
        wait $pid 2>/dev/null
        check_after_kill "$DB" 2 "$view" "finetune killed after ${t}s"
        ok "finetune killed after ${t}s: the existing --out model is untouched, no temporary file" \
            'cmp -s "$MODELS/mlp.onnx" "$tmp/tuned.onnx" && [ -z "$(ls -A "$tmp" | grep "\.tmp-")" ]'
    done
    diag "killed runs left in the file: $(q "$DB" "SELECT count(*) FROM runs WHERE status = 'running'") running"
    "$CS" analyze $TINY --db "$DB" >/dev/null 2>&1
    ok "after the kills a new run writes normally" \
        '[ "$(q "$DB" "SELECT status FROM runs ORDER BY id DESC LIMIT 1")" = done ] && [ "$(q "$DB" "PRAGMA integrity_check")" = ok ]'
else
    skip "Fashion-MNIST not found in $FASHION_MNIST_DIR: SIGKILL tests"
fi

# Two writers at once: first on a file neither finds (both try to create
# the schema), then on the existing file, three at a time.
for case in new existing; do
    CDB=$tmp/conc-$case.db
    [ $case = existing ] && "$CS" analyze $TINY --db "$CDB" >/dev/null 2>&1
    before=$(q "$CDB" "SELECT count(*) FROM runs WHERE status = 'done'")
    before=${before:-0}
    "$CS" analyze $TINY $ALL --db "$CDB" >"$tmp/c1" 2>&1 & p1=$!
    "$CS" analyze $TINY $ALL --db "$CDB" >"$tmp/c2" 2>&1 & p2=$!
    "$CS" analyze $TINY --db "$CDB" >"$tmp/c3" 2>&1 & p3=$!
    wait $p1; r1=$?; wait $p2; r2=$?; wait $p3; r3=$?
    ok "three analyze runs at once on the $case file all exit 0 ($r1 $r2 $r3: $(cat "$tmp/c1" "$tmp/c2" "$tmp/c3" | grep error | head -1))" \
        '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ $r3 -eq 0 ]'
    ok "... and all three runs are done, with their results, in a sound file" \
        '[ "$(q "$CDB" "SELECT count(*) FROM runs WHERE status = '\''done'\''")" = $((before + 3)) ] &&
         [ "$(q "$CDB" "SELECT count(DISTINCT run_id) FROM curvature")" = $((before + 3)) ] &&
         [ "$(q "$CDB" "PRAGMA integrity_check")" = ok ]'
done

# A finetune keeps no write lock while it trains: an analyze started during
# it ends first, and both are done.
if [ -f "$IMG" ]; then
    CDB=$tmp/conc-ft.db
    "$CS" finetune "$MODELS/mlp.onnx" $REAL --samples 20000 --precond sgd --epochs 8 --out "$tmp/ft.onnx" \
        --db "$CDB" >"$tmp/c1" 2>&1 & p1=$!
    wait_started "$CDB" +0 $p1 0
    "$CS" analyze $TINY $ALL --db "$CDB" >"$tmp/c2" 2>&1; r2=$?
    ok "an analyze during a finetune on the same file exits 0 before the finetune ends ($r2)" \
        '[ $r2 -eq 0 ] && kill -0 $p1 2>/dev/null'
    wait $p1; r1=$?
    ok "... the finetune exits 0 too, both runs done in a sound file ($r1)" \
        '[ $r1 -eq 0 ] && [ "$(q "$CDB" "SELECT group_concat(x) FROM (SELECT kind || '\''='\'' || status AS x FROM runs ORDER BY id)")" = "finetune=done,analyze=done" ] &&
         [ "$(q "$CDB" "SELECT count(*) > 0 FROM finetune_steps")" = 1 ] && [ "$(q "$CDB" "PRAGMA integrity_check")" = ok ]'
else
    skip "Fashion-MNIST not found: finetune and analyze at once"
    skip "Fashion-MNIST not found: finetune and analyze at once"
fi

# Foreign files: refused before any work, left byte for byte as they were.
sqlite3 "$tmp/other.db" "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('keep me')"
s0=$(sum "$tmp/other.db")
expect2 "another application's SQLite database" "$CS" analyze $TINY --db "$tmp/other.db"
ok "... is unchanged, with no side files" '[ "$(sum "$tmp/other.db")" = "$s0" ] && [ ! -e "$tmp/other.db-wal" ] && [ ! -e "$tmp/other.db-journal" ]'
head -c 65536 /dev/urandom >"$tmp/random.db"
s0=$(sum "$tmp/random.db")
expect2 "a file of random bytes" "$CS" finetune "$MODELS/tiny_cnn64.onnx" --data "npy:$FX/curv_tiny_cnn64_x.npy" \
    --labels "npy:$FX/curv_tiny_cnn64_y.npy" --precond sgd --out "$tmp/x.onnx" --db "$tmp/random.db"
ok "... is unchanged and no model was written" '[ "$(sum "$tmp/random.db")" = "$s0" ] && [ ! -e "$tmp/x.onnx" ]'

# Read-only file and directory.  Root ignores permissions: run as nobody
# where we can, else skip.
as_user=
if [ "$(id -u)" = 0 ]; then
    if command -v setpriv >/dev/null 2>&1 && id nobody >/dev/null 2>&1; then
        as_user="setpriv --reuid=nobody --regid=$(id -g nobody) --clear-groups"
        chmod 755 "$tmp"
    fi
fi
if [ "$(id -u)" != 0 ] || [ -n "$as_user" ]; then
    mkdir "$tmp/ro"
    RODB=$tmp/ro/r.db
    "$CS" analyze $TINY --db "$RODB" >/dev/null 2>&1
    [ -n "$as_user" ] && chown -R nobody "$tmp/ro"
    chmod 444 "$RODB"
    s0=$(sum "$RODB")
    expect2 "a read-only database file" $as_user "$CS" analyze $TINY --db "$RODB"
    ok "... is unchanged" '[ "$(sum "$RODB")" = "$s0" ] && [ "$(q "$RODB" "SELECT count(*) FROM runs")" = 1 ]'
    chmod 644 "$RODB"
    chmod 555 "$tmp/ro"
    expect2 "a database in a read-only directory" $as_user "$CS" analyze $TINY --db "$RODB"
    ok "... is unchanged" '[ "$(sum "$RODB")" = "$s0" ]'
    expect2 "a new database in a read-only directory" $as_user "$CS" analyze $TINY --db "$tmp/ro/new.db"
    ok "... is not created" '[ ! -e "$tmp/ro/new.db" ]'
    chmod 755 "$tmp/ro"
else
    skip "running as root without setpriv: read-only file"
    skip "running as root without setpriv: read-only file unchanged"
    skip "running as root without setpriv: read-only directory"
    skip "running as root without setpriv: read-only directory unchanged"
    skip "running as root without setpriv: new file in a read-only directory"
    skip "running as root without setpriv: not created"
fi

# A full disk, as a file size limit (SIGXFSZ ignored, so writes fail with
# EFBIG).  ulimit -f counts 512-byte blocks in some shells, 1024 in others.
trap '' XFSZ
( ulimit -f 1; head -c 2000 /dev/zero >"$tmp/unit" ) 2>/dev/null
unit=$(wc -c <"$tmp/unit")
FDB=$tmp/full.db
"$CS" analyze $TINY --db "$FDB" >/dev/null 2>&1
s0=$(sum "$FDB")
# Nothing at all can be written: the file stays byte for byte.
expect2 "a full disk where nothing fits" sh -c "ulimit -f 1; exec \"\$@\"" sh "$CS" analyze $TINY $ALL --db "$FDB"
ok "... leaves the file unchanged" '[ "$(sum "$FDB")" = "$s0" ]'
# The run row fits, its results do not: the run is marked failed with the
# reason, the earlier run untouched.
view=$(done_view "$FDB")
expect2 "a full disk where the results do not fit" \
    sh -c "ulimit -f $((65536 / unit)); exec \"\$@\"" sh "$CS" analyze $TINY $ALL --importance --db "$FDB"
ok "... leaves a sound file, the earlier run intact, the new one not done and without results" \
    '[ "$(q "$FDB" "PRAGMA integrity_check")" = ok ] && [ "$(done_view "$FDB")" = "$view" ] &&
     [ "$(q "$FDB" "SELECT count(*) FROM runs WHERE status = '\''done'\''")" = 1 ] &&
     [ "$(q "$FDB" "SELECT count(*) FROM curvature WHERE run_id > 1")" = 0 ]'
trap - XFSZ

# --out written atomically: a finetune whose model cannot be written
# (the directory is gone) fails in one line and leaves nothing.
expect2 "finetune --out in a missing folder" "$CS" finetune "$MODELS/tiny_cnn64.onnx" \
    --data "npy:$FX/curv_tiny_cnn64_x.npy" --labels "npy:$FX/curv_tiny_cnn64_y.npy" --precond sgd \
    --out "$tmp/no/such/dir/x.onnx" --db "$tmp/out.db"
ok "... and its run is marked failed" '[ "$(q "$tmp/out.db" "SELECT status FROM runs")" = failed ]'
cp "$MODELS/tiny_cnn64.onnx" "$tmp/old.onnx"
"$CS" finetune "$MODELS/tiny_cnn64.onnx" --data "npy:$FX/curv_tiny_cnn64_x.npy" \
    --labels "npy:$FX/curv_tiny_cnn64_y.npy" --precond sgd --out "$tmp/old.onnx" --db "$tmp/out.db" >/dev/null 2>&1
ok "a finished finetune replaces --out with a new model and leaves no temporary file" \
    '! cmp -s "$MODELS/tiny_cnn64.onnx" "$tmp/old.onnx" && "$CS" info "$tmp/old.onnx" >/dev/null 2>&1 &&
     [ -z "$(ls -A "$tmp" | grep "\.tmp-")" ]'

echo "1..$n"
exit 0
