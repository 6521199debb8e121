#!/bin/sh
# The zoo: small trained exports of real architectures (tools/make_zoo.py:
# torchvision ResNet, MobileNetV3, ShuffleNetV2, DenseNet, VisionTransformer,
# a causal nn.TransformerEncoder LM, nn.LSTM and nn.GRU classifiers, an
# encoder-decoder CNN, a cross-attention nn.MultiheadAttention exported
# without constant folding; opsets 13 and 17) checked against PyTorch's float64
# references in tests/zoo/<model>.txt.  For every model:
#   1. `info` lists no unsupported operator;
#   2. `eval` gives the reference's mean cross-entropy within 1e-4 relative;
#   3. `eval --grad` gives every reference per-initializer gradient norm, and
#      the whole gradient's norm, within 1e-3 relative (where the export keeps
#      the parameters one to one: the reference's grad_norm_onnx line);
#   4. `analyze --curvature ggn --repr kfac,diag` completes and stores K-FAC and
#      diagonal rows;
#   5. `finetune --precond kfac`, four steps of 8 samples, writes a model whose
#      eval loss is at most 5% above the original's;
#   6. that model, reloaded, evaluates to the loss finetune reported for its
#      final weights (the write-back).
# Speaks TAP.

. "${top_srcdir:-.}/tests/cli/preamble.sh"
ZOO=$top_srcdir/tests/zoo

skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
# value of key K in reference file F (first field after the key)
ref() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }
# |a - b| <= tol * |b| + floor
close() { awk -v a="$1" -v b="$2" -v t="$3" -v f="${4:-0}" \
    'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(a != "" && d <= t * m + f) }'; }

if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "1..0 # SKIP the sqlite3 shell is not installed"
    exit 0
fi

for txt in "$ZOO"/*_op*.txt; do
    model=$(basename "$txt" .txt)            # e.g. resnet_op13
    fam=${model%_op*}
    onnx=$ZOO/$model.onnx
    flags=$(sed -n 's/^flags *//p' "$txt")
    DATA="--data npy:$ZOO/${fam}_x.npy --labels npy:$ZOO/${fam}_y.npy $flags"

    "$CS" info "$onnx" >"$tmp/info" 2>&1
    rc=$?
    unsupported=$(sed -n 's/^unsupported operators: //p' "$tmp/info")
    if [ $rc -eq 0 ] && [ "$unsupported" != none ] && [ -n "$unsupported" ]; then
        # TRANSITIONAL (issue 16): the operators of this export land on other
        # branches (Slice, Split, Expand, Tile, Pad, ConstantOfShape, Range,
        # ConvTranspose, ...).  Until they are merged the model is skipped,
        # naming them; after the merge no model may take this branch.
        ops=$(printf '%s\n' "$unsupported" | grep -o '[A-Za-z0-9_]* (node' | sed 's/ (node//' | sort -u | tr '\n' ' ')
        for what in "info lists no unsupported operator" "eval loss" "gradient norms" \
            "analyze ggn kfac,diag" "finetune kfac"; do
            skip "$model: $what: TRANSITIONAL, unsupported operators: ${ops% }"
        done
        continue
    fi
    ok "$model: info exits 0 and lists no unsupported operator" '[ $rc -eq 0 ] && [ "$unsupported" = none ]'

    # 2. the loss
    "$CS" eval "$onnx" $DATA --grad >"$tmp/eval" 2>&1
    rc=$?
    want=$(ref "$txt" loss)
    got=$(awk '$1 == "loss" { print $2; exit }' "$tmp/eval")
    ok "$model: eval loss $got equals PyTorch's $want within 1e-4 relative" \
        '[ $rc -eq 0 ] && close "$got" "$want" 1e-4'

    # 3. the gradient: curvscope prints '  NAME NORM' per parameter tensor
    total_ref=$(ref "$txt" grad_norm_onnx)
    all=$(ref "$txt" grad_norm)
    awk '/^gradient/ { g = 1; next } g && NF == 2 { print $1, $2 }' "$tmp/eval" | sort >"$tmp/cs_norms"
    awk '$1 == "param" { print $2, $3 }' "$txt" | sort >"$tmp/ref_norms"
    bad=$(join "$tmp/ref_norms" "$tmp/cs_norms" | awk -v s="$all" \
        '{ d = $3 - $2; if (d < 0) d = -d; if (d > 1e-3 * ($2 < 0 ? -$2 : $2) + 1e-7 * s) print $1 }')
    missing=$(join -v 1 "$tmp/ref_norms" "$tmp/cs_norms" | awk '{ print $1 }' | tr '\n' ' ')
    extra=$(join -v 2 "$tmp/ref_norms" "$tmp/cs_norms" | awk '{ print $1 }' | tr '\n' ' ')
    got_total=$(sed -n 's/^gradient *L2 norm \([^ ]*\) over.*/\1/p' "$tmp/eval")
    if [ -z "$total_ref" ]; then
        # not one to one: some PyTorch parameter is in no initializer as such
        ok "$model: per-initializer gradient norms equal PyTorch's within 1e-3 (not one to one: $(ref "$txt" unmapped | cut -c1-60)...)" \
            '[ $rc -eq 0 ] && [ -z "$bad" ] && [ -z "$extra" ]'
    elif [ -n "$missing" ]; then
        # the export keeps PyTorch's parameters one to one, so curvscope
        # must train every one of them (elementwise parameters included:
        # interp/param_rule.h); a frozen one is a failure, named
        ok "$model: every PyTorch parameter is trained (not trained: ${missing% }; bad: $bad; extra: $extra)" false
    else
        ok "$model: gradient norm $got_total equals PyTorch's $total_ref within 1e-3, and each of its $(wc -l <"$tmp/ref_norms") tensors" \
            '[ $rc -eq 0 ] && close "$got_total" "$total_ref" 1e-3 && [ -z "$bad" ] && [ -z "$extra" ]'
    fi

    # 4. curvature (--max-full 256: the exact blocks that score K-FAC and the
    # diagonal cost O(P^2) per layer; 4096-parameter blocks take minutes here)
    "$CS" analyze "$onnx" $DATA --curvature ggn --repr kfac,diag --max-full 256 \
        --db "$tmp/$model.db" >"$tmp/an" 2>&1
    rc=$?
    ok "$model: analyze --curvature ggn --repr kfac,diag completes with rows" \
        '[ $rc -eq 0 ] && [ "$(q "$tmp/$model.db" "SELECT count(DISTINCT repr) FROM curvature WHERE curvature = '\''ggn'\'' AND repr IN ('\''kfac'\'', '\''diag'\'')")" = 2 ]'
    # parts of one initializer folded at load (xattn: in_proj_weight and
    # in_proj_bias, two parts each) are stored with their source
    parts=$(grep -o '(part of ' "$tmp/info" | wc -l | tr -d ' ')
    stored=$(q "$tmp/$model.db" "SELECT count(*) FROM param_parts JOIN params USING (run_id, param_id)")
    ok "$model: the $parts parts that info lists are the param_parts rows ($stored)" \
        '[ $rc -eq 0 ] && [ "$parts" = "$stored" ]'

    # 5. four small K-FAC steps do not spoil the model
    # (lr 3e-4: at 1e-3, K-FAC under its default damping 1e-3 takes the
    # confident LSTM export from loss 0.024 to 0.27 in four steps, KL clipping
    # notwithstanding: K-FAC's treatment of the time steps as independent
    # misjudges the recurrent weights' curvature there (Martens, Ba & Johnson
    # 2018); EK-FAC and lr 3e-4 both lower the loss.  Recorded in the issue.)
    "$CS" finetune "$onnx" $DATA --precond kfac --batch 8 --epochs 1 --lr 3e-4 --seed 1 \
        --out "$tmp/$model.tuned.onnx" --db "$tmp/$model.ft.db" >"$tmp/ft" 2>&1
    rc=$?
    "$CS" eval "$tmp/$model.tuned.onnx" $DATA >"$tmp/eval2" 2>&1
    tuned=$(awk '$1 == "loss" { print $2; exit }' "$tmp/eval2")
    steps=$(sed -n 's/^\([0-9]*\) steps in .*/\1/p' "$tmp/ft")
    ok "$model: finetune --precond kfac, $steps steps: eval loss $tuned within 5% of $got" \
        '[ $rc -eq 0 ] && [ "$steps" = 4 ] && [ -n "$tuned" ] && awk -v a="$tuned" -v b="$got" "BEGIN { exit !(a <= 1.05 * b) }"'
    # 6. the written model is the tuned one: reloaded, it evaluates to the
    # loss finetune measured on its weights after the last step (both
    # printed to 6 decimals), and it differs from the original's (the
    # write-back of initializers folded into parts at load, xattn, included)
    final=$(sed -n 's/.*final train loss \([^ ]*\) .*/\1/p' "$tmp/ft")
    ok "$model: the written model evaluates to finetune's final loss ($tuned vs $final, original $got)" \
        '[ -n "$final" ] && close "$tuned" "$final" 1e-5 2e-6 && ! close "$tuned" "$got" 0 1e-6'
done

echo "1..$n"
