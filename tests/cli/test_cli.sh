#!/bin/sh
# curvscope's command line, end to end: the built binary on the bundled
# models, Fashion-MNIST and the ONNX backend test data.  Speaks TAP.
#
# Environment (set by make check): top_srcdir, top_builddir,
# FASHION_MNIST_DIR, ONNX_TESTDATA_DIR.

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
FASHION_MNIST_DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
ONNX_TESTDATA_DIR=${ONNX_TESTDATA_DIR:-/usr/share/libonnx-testdata/data}

CS=$top_builddir/curvscope
MODELS=$top_srcdir/tests/models
FIXTURES=$top_srcdir/tests/fixtures

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_cli.XXXXXX") || {
    echo "Bail out! cannot create a temporary directory"
    exit 1
}
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# ------------------------------------------------------------------ TAP
n=0
pass() { n=$((n + 1)); echo "ok $n - $*"; }
fail() { n=$((n + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
diag() { echo "$*" | sed 's/^/# /'; }

# check DESCRIPTION COMMAND...: one check on a command's exit status.
check() {
    desc=$1
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}

# checke DESCRIPTION EXPRESSION: one check on a shell expression (for && chains).
checke() {
    if eval "$2"; then pass "$1"; else fail "$1"; fi
}

# jq_ok FILTER FILE: jq -e succeeds quietly.
jq_ok() { jq -e "$1" "$2" >/dev/null 2>&1; }

# cs ARGS...: run curvscope; stdout in $tmp/out, stderr in $tmp/err, status in $rc.
cs() {
    "$CS" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

# Lines in a file, counting a last line without a newline.
nlines() { awk 'END { print NR }' "$1"; }

# close A B RTOL: |A - B| <= RTOL * |B|, both numbers.
close() {
    awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN {
        if (a == "" || b == "") exit 1
        d = a - b; if (d < 0) d = -d
        m = b + 0; if (m < 0) m = -m
        exit !(d <= r * m)
    }'
}

# same A B: equal as numbers.
same() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") exit 1; exit !(a + 0 == b + 0) }'
}

# fixture FILE KEY: the value of "KEY value" in a fixture ('#' lines are comments).
fixture() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }

# json_num KEY < FILE: the number after "KEY": in a one-line JSON object.
json_num() { sed -n "s/.*\"$1\": *\([-+0-9.eE]*\).*/\1/p" | head -n 1; }

# expect_error DESCRIPTION REGEX ARGS...: curvscope ARGS exits 2 with exactly
# one line on stderr that starts with "curvscope" and matches REGEX.
expect_error() {
    desc=$1
    re=$2
    shift 2
    cs "$@"
    lines=$(nlines "$tmp/err")
    first=$(head -n 1 "$tmp/err")
    why=""
    [ "$rc" -eq 2 ] || why="exit status $rc, not 2"
    [ -z "$why" ] && [ "$lines" -ne 1 ] && why="$lines lines on stderr, not 1"
    if [ -z "$why" ]; then
        case $first in
        curvscope*) ;;
        *) why="stderr does not start with 'curvscope'" ;;
        esac
    fi
    [ -z "$why" ] && ! grep -Eq -- "$re" "$tmp/err" && why="stderr does not match /$re/"
    if [ -z "$why" ]; then
        pass "$desc"
    else
        fail "$desc"
        diag "$why; stderr was:"
        diag "$(cat "$tmp/err")"
    fi
}

if [ ! -x "$CS" ]; then
    echo "Bail out! $CS is not built"
    exit 1
fi

have_fmnist=0
FM_IMG=$FASHION_MNIST_DIR/t10k-images-idx3-ubyte.gz
FM_LAB=$FASHION_MNIST_DIR/t10k-labels-idx1-ubyte.gz
FM_TRAIN_LAB=$FASHION_MNIST_DIR/train-labels-idx1-ubyte.gz
[ -f "$FM_IMG" ] && [ -f "$FM_LAB" ] && have_fmnist=1
have_testdata=0
[ -d "$ONNX_TESTDATA_DIR/node/test_add" ] && have_testdata=1
have_jq=0
command -v jq >/dev/null 2>&1 && have_jq=1

# A tiny IDX dataset of our own (2 blank 28x28 images, labels 3 and 7), so
# the argument and data errors are checked without Fashion-MNIST.
{ printf '\000\000\010\003\000\000\000\002\000\000\000\034\000\000\000\034'
  head -c 1568 /dev/zero; } >"$tmp/img2.idx"
printf '\000\000\010\001\000\000\000\002\003\007' >"$tmp/lab2.idx"
printf '\000\000\010\001\000\000\000\003\003\007\001' >"$tmp/lab3.idx"
D2="--data idx:$tmp/img2.idx"
L2="--labels idx:$tmp/lab2.idx"
MLP=$MODELS/mlp.onnx

# ------------------------------------------------------------------ version, help
cs --version
check "--version exits 0" [ "$rc" -eq 0 ]
check "--version prints 'curvscope X.Y.Z'" grep -Eq '^curvscope [0-9]+\.[0-9]+\.[0-9]+$' "$tmp/out"
check "--version prints one line" [ "$(nlines "$tmp/out")" -eq 1 ]

cs --help
check "--help exits 0" [ "$rc" -eq 0 ]
check "--help shows the usage line" grep -q '^usage: curvscope COMMAND' "$tmp/out"
for c in info eval run; do
    check "--help lists the '$c' command" grep -Eq "^ +$c " "$tmp/out"
done

cs
check "no arguments exits 2" [ "$rc" -eq 2 ]
check "no arguments prints the usage on stderr" grep -q '^usage: curvscope' "$tmp/err"

for c in info eval run; do
    cs "$c" --help
    check "'$c --help' exits 0" [ "$rc" -eq 0 ]
    check "'$c --help' shows 'usage: curvscope $c'" grep -q "^usage: curvscope $c " "$tmp/out"
    check "'$c --help' writes nothing on stderr" [ ! -s "$tmp/err" ]
done
cs eval --help
check "'eval --help' describes --data and --labels" grep -q -- '--labels SPEC' "$tmp/out"

expect_error "unknown command exits 2 naming it" "frobnicate" frobnicate

# ------------------------------------------------------------------ info
cs info "$MLP"
check "info mlp.onnx exits 0" [ "$rc" -eq 0 ]
want=$((784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10))
check "the MLP's parameter count 784*64+64+64*32+32+32*10+10 is 52650" [ "$want" -eq 52650 ]
check "info mlp.onnx reports 3 layers and $want parameters" \
    grep -Eq "^layers +3, parameters $want\$" "$tmp/out"
rows=$(awk '/^ +[0-9]+ +[^ ]+ +[^ ]+ +[0-9]+ /' "$tmp/out" | awk 'END { print NR }')
check "info mlp.onnx lists 3 layer rows (got $rows)" [ "$rows" -eq 3 ]
sum=$(awk '/^ +[0-9]+ +[^ ]+ +[^ ]+ +[0-9]+ / { s += $4 } END { print s + 0 }' "$tmp/out")
check "the layer rows' params add up to $want (got $sum)" [ "$sum" -eq "$want" ]
check "info mlp.onnx shows the weight tensor fc1.weight [64, 784]" \
    grep -q 'fc1.weight \[64, 784\]' "$tmp/out"
check "info mlp.onnx reports no unsupported operators" \
    grep -q '^unsupported operators: none$' "$tmp/out"

for m in mlp cnn attn; do
    cs info --json "$MODELS/$m.onnx"
    check "info --json $m.onnx exits 0" [ "$rc" -eq 0 ]
    check "info --json $m.onnx prints exactly one line" [ "$(nlines "$tmp/out")" -eq 1 ]
    check "info --json $m.onnx is an object with \"params\": and \"layers\":" \
        grep -Eq '^\{.*"params": *[0-9]+.*"layers": *\[.*\}$' "$tmp/out"
    if [ "$have_jq" -eq 1 ]; then
        check "info --json $m.onnx is valid JSON with params and layers (jq)" \
            jq_ok 'has("params") and has("layers") and (.layers | type == "array")' "$tmp/out"
    else
        skip "jq is not installed"
    fi
    p=$(json_num params <"$tmp/out")
    s=$(grep -o '"n_params": *[0-9]*' "$tmp/out" | awk -F: '{ s += $2 } END { print s + 0 }')
    k=$(grep -o '"n_params": *[0-9]*' "$tmp/out" | awk 'END { print NR }')
    checke "$m: \"params\" ($p) is the sum of n_params over its $k layers ($s)" \
        '[ -n "$p" ] && [ "$k" -gt 0 ] && [ "$p" -eq "$s" ]'
    if [ "$m" = mlp ]; then
        checke "mlp: JSON params is $want with 3 layers" '[ "$p" = "$want" ] && [ "$k" -eq 3 ]'
    fi
done

# ------------------------------------------------------------------ eval
# Our own two-sample set: runs everywhere.
cs eval "$MLP" $D2 $L2
check "eval on a 2-image IDX set exits 0" [ "$rc" -eq 0 ]
check "eval reports samples 2" grep -Eq '^samples +2$' "$tmp/out"
cs eval "$MLP" $D2 $L2 --samples 1 --json
check "eval --samples 1 --json reports samples 1" [ "$(json_num samples <"$tmp/out")" = 1 ]

NORM="--scale 1/255 --mean 0.2860 --std 0.3530 --samples 1000"
if [ "$have_fmnist" -eq 1 ]; then
    FM="--data idx:$FM_IMG --labels idx:$FM_LAB"
    for m in mlp cnn attn; do
        fx=$FIXTURES/eval_$m.txt
        f_ce=$(fixture "$fx" loss_ce)
        f_mse=$(fixture "$fx" loss_mse)
        f_acc=$(fixture "$fx" accuracy)
        model=$MODELS/$m.onnx

        cs eval "$model" $FM $NORM
        check "eval $m exits 0" [ "$rc" -eq 0 ]
        t_loss=$(awk '$1 == "loss" { print $2 }' "$tmp/out")
        t_acc=$(awk '$1 == "accuracy" { print $2 }' "$tmp/out")
        checke "eval $m prints a loss line ($t_loss) and an accuracy line ($t_acc)" \
            '[ -n "$t_loss" ] && [ -n "$t_acc" ]'
        check "eval $m: printed loss $t_loss matches loss_ce $f_ce (rtol 1e-4)" \
            close "$t_loss" "$f_ce" 1e-4
        check "eval $m: printed accuracy $t_acc equals $f_acc" same "$t_acc" "$f_acc"
        check "eval $m reports 1000 samples" grep -Eq '^samples +1000$' "$tmp/out"

        cs eval "$model" $FM $NORM --json
        cp "$tmp/out" "$tmp/eval_$m.json"
        checke "eval --json $m exits 0 with one line" '[ "$rc" -eq 0 ] && [ "$(nlines "$tmp/out")" -eq 1 ]'
        missing=""
        for key in loss accuracy samples seconds; do
            grep -Eq "\"$key\": *[-+0-9.eE]+" "$tmp/out" || missing="$missing $key"
        done
        check "eval --json $m has numeric loss, accuracy, samples, seconds${missing:+ (missing:$missing)}" \
            [ -z "$missing" ]
        if [ "$have_jq" -eq 1 ]; then
            check "eval --json $m is valid JSON (jq)" \
                jq_ok '(.loss | type == "number") and (.accuracy | type == "number") and
                       .samples == 1000 and (.seconds | type == "number")' "$tmp/out"
        else
            skip "jq is not installed"
        fi
        j_loss=$(json_num loss <"$tmp/out")
        j_acc=$(json_num accuracy <"$tmp/out")
        check "eval --json $m: loss $j_loss matches loss_ce $f_ce (rtol 1e-4)" close "$j_loss" "$f_ce" 1e-4
        check "eval --json $m: accuracy $j_acc equals $f_acc" same "$j_acc" "$f_acc"
        check "eval --json $m: samples is 1000" [ "$(json_num samples <"$tmp/out")" = 1000 ]

        cs eval "$model" $FM $NORM --json --batch 7
        b_loss=$(json_num loss <"$tmp/out")
        check "eval $m --batch 7 exits 0" [ "$rc" -eq 0 ]
        check "eval $m --batch 7 (not a divisor of 1000): loss $b_loss equals $j_loss (rtol 1e-6)" \
            close "$b_loss" "$j_loss" 1e-6
        check "eval $m --batch 7: accuracy unchanged" same "$(json_num accuracy <"$tmp/out")" "$j_acc"

        cs eval "$model" $FM $NORM --json --loss mse
        m_loss=$(json_num loss <"$tmp/out")
        check "eval $m --loss mse exits 0" [ "$rc" -eq 0 ]
        check "eval $m --loss mse: loss $m_loss matches loss_mse $f_mse (rtol 1e-4)" \
            close "$m_loss" "$f_mse" 1e-4
        check "eval $m --loss mse says loss_kind mse" grep -q '"loss_kind": "mse"' "$tmp/out"
    done

    # --grad against the PyTorch gradient fixture (256 training images):
    # per-tensor L2 norms in the JSON, the flat vector in --grad-out.
    FM_TRAIN_IMG=$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz
    for m in mlp cnn; do
        cs eval "$MODELS/$m.onnx" --data "idx:$FM_TRAIN_IMG" --labels "idx:$FM_TRAIN_LAB" \
            --scale 1/255 --mean 0.2860 --std 0.3530 --samples 256 --grad --json \
            --grad-out "$tmp/grad_$m.npy"
        check "eval $m --grad --grad-out exits 0" [ "$rc" -eq 0 ]
        gx=$FIXTURES/grad_$m.txt
        for p in $(awk '$1 == "param" { print $2 }' "$gx"); do
            want=$(awk -v p="$p" 'f { s = 0; for (i = 1; i <= NF; i++) s += $i * $i; printf "%.12g\n", sqrt(s); exit }
                                  $1 == "param" && $2 == p { f = 1 }' "$gx")
            got=$(sed -n "s/.*\"$p\": *\([-+0-9.eE]*\).*/\1/p" "$tmp/out")
            check "eval $m --grad: norm of $p is $got, PyTorch $want (rtol 1e-4)" close "$got" "$want" 1e-4
        done
        P=$(awk '$1 == "param" { s += $3 } END { print s }' "$gx")
        size=$(wc -c <"$tmp/grad_$m.npy")
        head=$((size - 8 * P))
        checke "--grad-out $m: a .npy of $P float64 values after a 64-byte aligned header ($size bytes)" \
            '[ "$head" -gt 0 ] && [ $((head % 64)) -eq 0 ] && head -c 6 "$tmp/grad_$m.npy" | od -c | grep -q "N   U   M   P   Y" &&
             head -c 128 "$tmp/grad_$m.npy" | grep -q "<f8"'
    done
else
    skip "Fashion-MNIST not found in $FASHION_MNIST_DIR: eval against the fixtures"
fi

# ------------------------------------------------------------------ run
if [ "$have_testdata" -eq 1 ]; then
    X=$ONNX_TESTDATA_DIR/node/test_add
    cs run "$X/model.onnx" --input "x=pb:$X/test_data_set_0/input_0.pb" \
        --input "y=pb:$X/test_data_set_0/input_1.pb" --out "$tmp/run_add"
    check "run test_add with inputs x and y exits 0" [ "$rc" -eq 0 ]
    check "run test_add writes a non-empty output_0.pb" [ -s "$tmp/run_add/output_0.pb" ]
    R=$ONNX_TESTDATA_DIR/node/test_relu
    if [ -d "$R" ]; then
        cs run "$R/model.onnx" --input "pb:$R/test_data_set_0/input_0.pb" --out "$tmp/run_relu"
        check "run test_relu with its single input given without NAME= exits 0" [ "$rc" -eq 0 ]
        check "run test_relu writes a non-empty output_0.pb" [ -s "$tmp/run_relu/output_0.pb" ]
    else
        skip "no test_relu in $ONNX_TESTDATA_DIR"
    fi
    expect_error "run without --out: exit 2, one line naming --out" \
        '--out' run "$X/model.onnx" --input "x=pb:$X/test_data_set_0/input_0.pb" \
        --input "y=pb:$X/test_data_set_0/input_1.pb"
    expect_error "run with an input name the model lacks: exit 2, one line naming it" \
        "zz_no_such_input" run "$X/model.onnx" --input "x=pb:$X/test_data_set_0/input_0.pb" \
        --input "zz_no_such_input=pb:$X/test_data_set_0/input_1.pb" --out "$tmp/run_bad"
    expect_error "run with input y missing: exit 2, one line naming y" \
        "'y'" run "$X/model.onnx" --input "x=pb:$X/test_data_set_0/input_0.pb" --out "$tmp/run_bad"
    expect_error "run with an input file that does not exist: exit 2, one line naming it" \
        "no_such_input\.pb" run "$X/model.onnx" --input "x=pb:$tmp/no_such_input.pb" \
        --input "y=pb:$X/test_data_set_0/input_1.pb" --out "$tmp/run_bad"
else
    skip "ONNX backend test data not found in $ONNX_TESTDATA_DIR: run"
fi

# ------------------------------------------------------------------ errors
head -c 300 "$MLP" >"$tmp/trunc.onnx"
# Deterministic junk: bytes of a fixed pseudo-random sequence.
awk 'BEGIN { x = 12345; for (i = 0; i < 4096; i++) { x = (x * 1103515245 + 12345) % 2147483648;
     printf "%c", 1 + int(x / 65536) % 255 } }' >"$tmp/random.onnx"

expect_error "info on a missing model file: exit 2, one line naming it" \
    "no_such_model\.onnx" info "$tmp/no_such_model.onnx"
expect_error "info on a truncated model (300 bytes): exit 2, one line naming it" \
    "trunc\.onnx" info "$tmp/trunc.onnx"
expect_error "eval on a truncated model: exit 2, one line naming it" \
    "trunc\.onnx" eval "$tmp/trunc.onnx" $D2 $L2
expect_error "info on random bytes: exit 2, one line naming the file" \
    "random\.onnx" info "$tmp/random.onnx"
expect_error "info without a model: exit 2" "MODEL" info
expect_error "eval without --data: exit 2, one line naming --data" "--data" eval "$MLP" $L2
expect_error "eval without --labels: exit 2, one line naming --labels" "--labels" eval "$MLP" $D2
expect_error "eval with an unknown option: exit 2, one line naming it" \
    "--bogus" eval "$MLP" $D2 $L2 --bogus
expect_error "info with an unknown option: exit 2, one line naming it" "--bogus" info --bogus "$MLP"
expect_error "--batch 0: exit 2, one line naming --batch" "--batch.*'?0" eval "$MLP" $D2 $L2 --batch 0
expect_error "--batch abc: exit 2, one line naming --batch and abc" \
    "--batch.*abc" eval "$MLP" $D2 $L2 --batch abc
expect_error "--batch without a value: exit 2, one line naming --batch" \
    "--batch" eval "$MLP" $D2 $L2 --batch
expect_error "--loss foo: exit 2, one line naming foo" "foo" eval "$MLP" $D2 $L2 --loss foo
expect_error "--scale 1/0: exit 2, one line naming --scale" "--scale.*1/0|1/0.*scale" \
    eval "$MLP" $D2 $L2 --scale 1/0
expect_error "--std 0: exit 2, one line naming --std" "--std" eval "$MLP" $D2 $L2 --std 0
expect_error "--samples -5: exit 2, one line naming --samples" "--samples" \
    eval "$MLP" $D2 $L2 --samples -5
expect_error "a data file that does not exist: exit 2, one line naming it" \
    "no_such_images" eval "$MLP" --data "idx:$tmp/no_such_images.gz" $L2
expect_error "a data spec without KIND: exit 2, one line naming the spec" \
    "img2\.idx" eval "$MLP" --data "$tmp/img2.idx" $L2
expect_error "data with the wrong magic (a model as idx:): exit 2, one line naming it" \
    "mlp\.onnx" eval "$MLP" --data "idx:$MLP" $L2
expect_error "2 images with 3 labels: exit 2, one line giving both counts" \
    "2.*3" eval "$MLP" $D2 --labels "idx:$tmp/lab3.idx"
expect_error "labels as data (1 value per sample, the model wants 784): exit 2, one line" \
    "shape|784" eval "$MLP" --data "idx:$tmp/lab2.idx" $L2
if [ "$have_fmnist" -eq 1 ] && [ -f "$FM_TRAIN_LAB" ]; then
    expect_error "t10k images with train labels: exit 2, one line giving 10000 and 60000" \
        "10000.*60000|60000.*10000" eval "$MLP" --data "idx:$FM_IMG" --labels "idx:$FM_TRAIN_LAB"
    expect_error "Fashion-MNIST labels as data: exit 2, one line about the shape" \
        "shape|784" eval "$MLP" --data "idx:$FM_LAB" --labels "idx:$FM_LAB"
    expect_error "Fashion-MNIST with --std 0: exit 2, one line naming --std" \
        "--std" eval "$MLP" --data "idx:$FM_IMG" --labels "idx:$FM_LAB" --std 0
else
    skip "Fashion-MNIST not found in $FASHION_MNIST_DIR: data errors on the real files"
fi
if [ "$have_testdata" -eq 0 ]; then
    # run's usage errors do not need the test data.
    expect_error "run without --out: exit 2, one line naming --out" '--out' run "$MLP" \
        --input "pb:$tmp/x.pb"
fi

echo "1..$n"
exit 0
