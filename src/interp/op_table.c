/* The one table of supported operators.  Adding an operator: write its
 * cs_op_def in the family file under interp/ops/, list it here, and add its
 * forward case to a tests/interp/test_ops_* binary and its one-line
 * derivative case to a test_grad_* binary; tests/interp/test_op_contract
 * walks this table and fails, naming the operator, for a missing check
 * (or a missing cs_op_def.no_derivative reason). */
#include "interp/op.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* interp/ops/gemm.c, matmul.c */
extern const cs_op_def cs_op_Gemm, cs_op_MatMul;
/* interp/ops/conv.c */
extern const cs_op_def cs_op_Conv;
extern const cs_op_def cs_op_ConvTranspose; /* ops/conv_transpose.c */
/* interp/ops/pool.c */
extern const cs_op_def cs_op_MaxPool, cs_op_AveragePool, cs_op_GlobalAveragePool;
/* interp/ops/batchnorm.c, layernorm.c */
extern const cs_op_def cs_op_BatchNormalization, cs_op_LayerNormalization;
/* interp/ops/act.c: unary elementwise */
extern const cs_op_def cs_op_Relu, cs_op_LeakyRelu, cs_op_Sigmoid, cs_op_Tanh, cs_op_Erf,
    cs_op_Exp, cs_op_Log, cs_op_Sqrt, cs_op_Neg, cs_op_Clip;
/* interp/ops/pointwise.c: unary functions with closed-form derivatives */
extern const cs_op_def cs_op_Abs, cs_op_Reciprocal, cs_op_Floor, cs_op_Ceil, cs_op_Round, cs_op_Sign,
    cs_op_Sin, cs_op_Cos, cs_op_Sinh, cs_op_Cosh, cs_op_Softplus, cs_op_Softsign, cs_op_Elu, cs_op_Celu,
    cs_op_Selu, cs_op_ThresholdedRelu, cs_op_HardSigmoid, cs_op_HardSwish, cs_op_Mish, cs_op_Gelu;
/* interp/ops/select.c: comparisons, logic, Where, Max, Min */
extern const cs_op_def cs_op_Equal, cs_op_Less, cs_op_LessOrEqual, cs_op_Greater, cs_op_GreaterOrEqual,
    cs_op_Not, cs_op_And, cs_op_Or, cs_op_Xor, cs_op_Where, cs_op_Max, cs_op_Min, cs_op_PRelu;
/* interp/ops/recurrent.c */
extern const cs_op_def cs_op_RNN, cs_op_GRU, cs_op_LSTM;
/* interp/ops/groupnorm.c */
extern const cs_op_def cs_op_InstanceNormalization, cs_op_GroupNormalization;
/* interp/ops/resize.c */
extern const cs_op_def cs_op_Resize, cs_op_Upsample;
/* interp/ops/einsum.c */
extern const cs_op_def cs_op_Einsum;
/* interp/ops/scan_mask.c */
extern const cs_op_def cs_op_CumSum, cs_op_Trilu;
/* interp/ops/elementwise.c: broadcasting binary */
extern const cs_op_def cs_op_Add, cs_op_Sub, cs_op_Mul, cs_op_Div, cs_op_Pow;
/* interp/ops/softmax.c */
extern const cs_op_def cs_op_Softmax, cs_op_LogSoftmax;
/* interp/ops/reduce.c */
extern const cs_op_def cs_op_ReduceMean, cs_op_ReduceSum, cs_op_ReduceMax, cs_op_ReduceMin, cs_op_ReduceL1,
    cs_op_ReduceL2, cs_op_ReduceSumSquare, cs_op_ReduceProd, cs_op_ReduceLogSum, cs_op_ReduceLogSumExp,
    cs_op_ArgMax, cs_op_ArgMin, cs_op_GlobalMaxPool;
/* interp/ops/rearrange.c */
extern const cs_op_def cs_op_Transpose, cs_op_Concat, cs_op_Gather;
/* interp/ops/slicing.c */
extern const cs_op_def cs_op_Slice, cs_op_Split, cs_op_Expand, cs_op_Tile;
/* interp/ops/shape_ops.c */
extern const cs_op_def cs_op_Flatten, cs_op_Reshape, cs_op_Unsqueeze, cs_op_Squeeze, cs_op_Shape,
    cs_op_Constant, cs_op_Identity, cs_op_Dropout, cs_op_Cast;
/* interp/ops/pad.c, permute.c */
extern const cs_op_def cs_op_Pad, cs_op_GatherElements, cs_op_DepthToSpace, cs_op_SpaceToDepth;
/* interp/ops/generate.c */
extern const cs_op_def cs_op_ConstantOfShape, cs_op_Range, cs_op_Size;

static const cs_op_def *const op_table[] = {
    &cs_op_Gemm, &cs_op_MatMul, &cs_op_Conv, &cs_op_ConvTranspose,
    &cs_op_MaxPool, &cs_op_AveragePool, &cs_op_GlobalAveragePool,
    &cs_op_BatchNormalization, &cs_op_LayerNormalization,
    &cs_op_Relu, &cs_op_LeakyRelu, &cs_op_Sigmoid, &cs_op_Tanh, &cs_op_Erf,
    &cs_op_Exp, &cs_op_Log, &cs_op_Sqrt, &cs_op_Neg, &cs_op_Clip,
    &cs_op_Abs, &cs_op_Reciprocal, &cs_op_Floor, &cs_op_Ceil, &cs_op_Round, &cs_op_Sign,
    &cs_op_Sin, &cs_op_Cos, &cs_op_Sinh, &cs_op_Cosh, &cs_op_Softplus, &cs_op_Softsign,
    &cs_op_Elu, &cs_op_Celu, &cs_op_Selu, &cs_op_ThresholdedRelu, &cs_op_HardSigmoid,
    &cs_op_HardSwish, &cs_op_Mish, &cs_op_Gelu,
    &cs_op_Equal, &cs_op_Less, &cs_op_LessOrEqual, &cs_op_Greater, &cs_op_GreaterOrEqual,
    &cs_op_Not, &cs_op_And, &cs_op_Or, &cs_op_Xor, &cs_op_Where, &cs_op_Max, &cs_op_Min, &cs_op_PRelu,
    &cs_op_CumSum, &cs_op_Trilu, &cs_op_Einsum, &cs_op_Resize, &cs_op_Upsample,
    &cs_op_InstanceNormalization, &cs_op_GroupNormalization, &cs_op_RNN, &cs_op_GRU, &cs_op_LSTM,
    &cs_op_Add, &cs_op_Sub, &cs_op_Mul, &cs_op_Div, &cs_op_Pow,
    &cs_op_Softmax, &cs_op_LogSoftmax,
    &cs_op_ReduceMean, &cs_op_ReduceSum, &cs_op_ReduceMax, &cs_op_ReduceMin, &cs_op_ReduceL1,
    &cs_op_ReduceL2, &cs_op_ReduceSumSquare, &cs_op_ReduceProd, &cs_op_ReduceLogSum, &cs_op_ReduceLogSumExp,
    &cs_op_ArgMax, &cs_op_ArgMin, &cs_op_GlobalMaxPool,
    &cs_op_Flatten, &cs_op_Reshape, &cs_op_Transpose, &cs_op_Concat,
    &cs_op_Gather, &cs_op_Unsqueeze, &cs_op_Squeeze, &cs_op_Shape, &cs_op_Constant,
    &cs_op_Identity, &cs_op_Dropout, &cs_op_Cast,
    &cs_op_Pad, &cs_op_GatherElements, &cs_op_DepthToSpace, &cs_op_SpaceToDepth,
    &cs_op_ConstantOfShape, &cs_op_Range, &cs_op_Size,
    &cs_op_Slice, &cs_op_Split, &cs_op_Expand, &cs_op_Tile,
};

const cs_op_def *cs_op_find(const char *op_type, const char *domain)
{
    if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0)
        return NULL;
    for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
        if (strcmp(op_table[i]->name, op_type) == 0)
            return op_table[i];
    return NULL;
}

int cs_op_count(void)
{
    return (int)(sizeof op_table / sizeof op_table[0]);
}

const cs_op_def *cs_op_at(int i)
{
    return op_table[i];
}

cs_status cs_op_fail(const cs_op_call *c, cs_err *err, cs_status code, const char *fmt, ...)
{
    char msg[CS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cs_fail(err, code, "%s node '%s': %s", c->node->op_type, c->node->name, msg);
}

cs_status cs_op_axis(const cs_op_call *c, int64_t axis, int rank, int *out, cs_err *err)
{
    if (axis < -(int64_t)rank || axis >= (int64_t)(rank > 0 ? rank : 1))
        return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %lld is out of range for rank %d",
                          (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return CS_OK;
}

cs_status cs_op_need_float(const cs_op_call *c, int i, cs_err *err)
{
    if (i >= c->n_in || !c->in[i])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "input %d is missing", i);
    if (!cs_dtype_is_float(c->in[i]->dtype))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input %d has type %s (float or double expected)",
                          i, cs_dtype_name(c->in[i]->dtype));
    return CS_OK;
}

cs_status cs_op_same_dtype(const cs_op_call *c, int i, int j, cs_err *err)
{
    if (c->in[i]->dtype != c->in[j]->dtype)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "inputs %d and %d differ in type (%s, %s)", i, j,
                          cs_dtype_name(c->in[i]->dtype), cs_dtype_name(c->in[j]->dtype));
    return CS_OK;
}

cs_status cs_op_check_ad(const cs_op_call *c, cs_tensor *const *in_side, cs_tensor *const *out_side,
                         cs_err *err)
{
    for (int i = 0; in_side && i < c->n_in; i++) {
        const cs_tensor *t = in_side[i], *v = c->in[i];
        if (t && (!v || t->dtype != v->dtype || !cs_tensor_same_shape(t, v) || !t->data))
            return cs_op_fail(c, err, CS_ERR_SHAPE,
                              "derivative of input %d does not match its type and shape", i);
    }
    for (int k = 0; out_side && k < c->n_out; k++) {
        const cs_tensor *t = out_side[k], *v = c->out[k];
        if (t && (!v || t->dtype != v->dtype || !cs_tensor_same_shape(t, v) || !t->data))
            return cs_op_fail(c, err, CS_ERR_SHAPE,
                              "derivative of output %d does not match its type and shape", k);
    }
    return CS_OK;
}

bool cs_op_jvp_done_early(const cs_op_ad *a, int in)
{
    if (!a->tout[0])
        return true;
    if (a->tin[in])
        return false;
    memset(a->tout[0]->data, 0, cs_tensor_bytes(a->tout[0]));
    return true;
}
