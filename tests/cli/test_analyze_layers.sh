#!/bin/sh
# curvscope analyze --curvature ggn --repr kfac,diag,unit on the tiny models of
# the layer kinds embedding, prelu, instancenorm, groupnorm (opsets 13, 18
# and 21) and the recurrent kinds lstm, gru, rnn: the run completes, every layer has its diagonal and unit-wise rows,
# K-FAC rows exist exactly for the layers with a Kronecker form (the
# embedding and the Gemm heads), the others are noted.  Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"

if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is not installed"
    exit 0
fi

# model, its layers, the layers with a K-FAC form, the op types in layer order
# (and the model whose data it reads, when not its own)
for spec in "tiny_embed64 2 2 Gather,Gemm" \
    "tiny_norm64 6 2 Conv,InstanceNormalization,PRelu,GroupNormalization,PRelu,Gemm" \
    "tiny_gn21_64 2 1 GroupNormalization,Gemm" \
    "tiny_seq64 4 4 LSTM,GRU,RNN,Gemm" \
    "tiny_lstm64 4 3 MatMul,MatMul,LSTM,Gemm tiny_seq64" \
    "tiny_gru64 3 2 GRU,GRU,Gemm tiny_seq64"; do
    set -- $spec
    m=$1 layers=$2 kfac=$3 ops=$4 data=${5:-$1}
    DB=$tmp/$m.db
    "$CS" analyze "$MODELS/$m.onnx" --data "npy:$FX/curv_${data}_x.npy" --labels "npy:$FX/curv_${data}_y.npy" \
        --db "$DB" --curvature ggn --repr kfac,diag,unit >"$tmp/$m.out" 2>"$tmp/err"
    rc=$?
    ok "$m: analyze --curvature ggn --repr kfac,diag,unit exits 0 ($(head -c 200 "$tmp/err"))" '[ $rc -eq 0 ]'
    ok "$m: the run is done with its $layers layers ($ops)" \
        '[ "$(q "$DB" "SELECT status FROM runs")" = done ] && [ "$(q "$DB" "SELECT group_concat(op_type, '\'','\'') FROM (SELECT op_type FROM layers ORDER BY layer_id)")" = "$ops" ]'
    ok "$m: diag and unit rows for every layer" \
        '[ "$(q "$DB" "SELECT count(*) FROM curvature WHERE repr = '\''diag'\'' AND layer_id IS NOT NULL")" = "$layers" ] && [ "$(q "$DB" "SELECT count(*) FROM curvature WHERE repr = '\''unit'\'' AND layer_id IS NOT NULL")" = "$layers" ]'
    ok "$m: kfac rows for the $kfac layers with a Kronecker form" \
        '[ "$(q "$DB" "SELECT count(*) FROM curvature WHERE repr = '\''kfac'\''")" = "$kfac" ]'
    ok "$m: traces are positive" '[ "$(q "$DB" "SELECT count(*) FROM curvature WHERE NOT trace > 0")" = 0 ]'
done
ok "tiny_norm64: the layers without a Kronecker form are noted" \
    '(for l in "in (InstanceNormalization)" "prelu1 (PRelu)" "gn (GroupNormalization)" "prelu2 (PRelu)"; do grep -q "layer $l: no K-FAC representation" "$tmp/tiny_norm64.out" || exit 1; done)'
ok "tiny_lstm64, tiny_gru64: an LSTM with peephole parameters and a GRU with linear_before_reset 1 are noted" \
    'grep -q "layer lstm (LSTM): no K-FAC representation" "$tmp/tiny_lstm64.out" && grep -q "layer gru2 (GRU): no K-FAC representation" "$tmp/tiny_gru64.out" && ! grep -q "layer gru1 (GRU): no K-FAC" "$tmp/tiny_gru64.out"'
echo "1..$n"
