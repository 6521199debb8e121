/* Einsum: a sum of products over labelled axes (numpy's einsum).
 *
 * The equation is parsed once per call into labels: each operand's axes,
 * an ellipsis standing for the leading axes that no letter names
 * (right-aligned across operands, size-1 axes broadcast), and the output's
 * axes (given after "->", or, implicitly, the ellipsis followed by the
 * letters that appear once, in alphabetical order).  A letter repeated
 * within an operand takes its diagonal.
 *
 * Evaluation walks every combination of label values once (an odometer),
 * so it costs the product of all label extents: exact for every pattern,
 * and quick at the sizes exports of small models use (attention's
 * "bhqd,bhkd->bhqk"); contractions large enough to matter belong in a GEMM
 * path, not written yet.
 *
 * The op is multilinear in its operands, so with P = prod_k x_k[idx_k]:
 *   forward  y[o] += P
 *   vjp      gx_k[idx_k] += gy[o] prod_{j != k} x_j[idx_j]
 *   jvp      ty[o] += sum_k tx_k[idx_k] prod_{j != k} x_j[idx_j]
 *   rop      gx_k[idx_k] += gy[o] sum_{j != k} tx_j[idx_j] prod_{q != k, j} x_q[idx_q]
 * (no second-order term in a single operand: the op is linear in each). */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"

#define EIN_MAX_OPERANDS 8
#define EIN_MAX_LABELS 64 /* 52 letters and the ellipsis axes */

typedef struct ein_plan {
    int n_ops;
    int n_labels;
    int64_t extent[EIN_MAX_LABELS];
    int rank[EIN_MAX_OPERANDS];
    int axis_label[EIN_MAX_OPERANDS][CS_MAX_DIMS];
    int out_rank;
    int out_label[CS_MAX_DIMS];
    int64_t out_dims[CS_MAX_DIMS];
    /* element stride of each label in each operand and the output (a
     * repeated letter adds its axes' strides: the diagonal) */
    int64_t stride[EIN_MAX_OPERANDS + 1][EIN_MAX_LABELS];
} ein_plan;

static int letter_label(char ch)
{
    return islower((unsigned char)ch) ? ch - 'a' : isupper((unsigned char)ch) ? 26 + ch - 'A' : -1;
}

/* Labels of one term (letters and one optional "..."), into lab[]; the
 * ellipsis' position in *ell (-1 when absent). */
static cs_status parse_term(const cs_op_call *c, const char *s, size_t len, int *lab, int *n, int *ell, cs_err *err)
{
    *n = 0;
    *ell = -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            continue;
        if (s[i] == '.') {
            if (*ell >= 0 || i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.')
                return cs_op_fail(c, err, CS_ERR_FORMAT, "equation has a malformed ellipsis");
            *ell = *n;
            i += 2;
            continue;
        }
        int l = letter_label(s[i]);
        if (l < 0 || *n >= CS_MAX_DIMS)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "equation has '%c' or too many axes in a term", s[i]);
        lab[(*n)++] = l;
    }
    return CS_OK;
}

static cs_status ein_parse(const cs_op_call *c, ein_plan *p, cs_err *err)
{
    memset(p, 0, sizeof *p);
    const char *eq = cs_node_attr_string(c->node, "equation", NULL);
    if (!eq)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "has no equation");
    if (c->n_in < 1 || c->n_in > EIN_MAX_OPERANDS)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "%d operands (1 to %d)", c->n_in, EIN_MAX_OPERANDS);
    p->n_ops = c->n_in;
    const char *arrow = strstr(eq, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - eq) : strlen(eq);
    int ell_rank = 0;
    int lab[EIN_MAX_OPERANDS][CS_MAX_DIMS], nlab[EIN_MAX_OPERANDS], ell[EIN_MAX_OPERANDS];
    const char *s = eq;
    for (int k = 0; k < p->n_ops; k++) {
        const char *end = memchr(s, ',', lhs_len - (size_t)(s - eq));
        size_t len = end ? (size_t)(end - s) : lhs_len - (size_t)(s - eq);
        if (k == p->n_ops - 1 && end)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "equation has more terms than the %d inputs", p->n_ops);
        if (k < p->n_ops - 1 && !end)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "equation has fewer terms than the %d inputs", p->n_ops);
        cs_status st = parse_term(c, s, len, lab[k], &nlab[k], &ell[k], err);
        if (st)
            return st;
        const cs_tensor *x = c->in[k];
        if (!x)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "input %d is missing", k);
        int er = x->ndim - nlab[k];
        if (er < 0 || (er > 0 && ell[k] < 0))
            return cs_op_fail(c, err, CS_ERR_SHAPE, "input %d has rank %d, the equation names %d axes", k, x->ndim,
                              nlab[k]);
        if (er > ell_rank)
            ell_rank = er;
        s = end ? end + 1 : s + len;
    }
    p->n_labels = 52 + ell_rank;
    for (int l = 0; l < p->n_labels; l++)
        p->extent[l] = -1;
    /* operand axes -> labels (ellipsis axes right-aligned: label 52 + j) */
    int count[EIN_MAX_LABELS] = {0};
    for (int k = 0; k < p->n_ops; k++) {
        const cs_tensor *x = c->in[k];
        int er = x->ndim - nlab[k], a = 0;
        p->rank[k] = x->ndim;
        for (int i = 0; i <= nlab[k]; i++) {
            if (i == ell[k])
                for (int j = 0; j < er; j++)
                    p->axis_label[k][a++] = 52 + ell_rank - er + j;
            if (i < nlab[k])
                p->axis_label[k][a++] = lab[k][i];
        }
        for (int d = 0; d < x->ndim; d++) {
            int l = p->axis_label[k][d];
            int64_t e = x->dims[d];
            count[l]++;
            if (p->extent[l] < 0 || p->extent[l] == 1)
                p->extent[l] = e;
            else if (e != p->extent[l] && e != 1)
                return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %d of input %d has extent %lld, %lld elsewhere", d, k,
                                  (long long)e, (long long)p->extent[l]);
        }
    }
    /* the output */
    if (arrow) {
        int olab[CS_MAX_DIMS], on, oell;
        cs_status st = parse_term(c, arrow + 2, strlen(arrow + 2), olab, &on, &oell, err);
        if (st)
            return st;
        /* an output without "..." sums the ellipsis axes away */
        for (int i = 0; i <= on; i++) {
            if (i == oell)
                for (int j = 0; j < ell_rank; j++)
                    p->out_label[p->out_rank++] = 52 + j;
            if (i < on) {
                if (p->extent[olab[i]] < 0)
                    return cs_op_fail(c, err, CS_ERR_FORMAT, "output label '%c' is in no input",
                                      olab[i] < 26 ? 'a' + olab[i] : 'A' + olab[i] - 26);
                p->out_label[p->out_rank++] = olab[i];
            }
        }
    } else {
        for (int j = 0; j < ell_rank; j++)
            p->out_label[p->out_rank++] = 52 + j;
        for (int l = 0; l < 52; l++)
            if (count[l] == 1)
                p->out_label[p->out_rank++] = l;
    }
    for (int d = 0; d < p->out_rank; d++)
        p->out_dims[d] = p->extent[p->out_label[d]];
    /* strides: a label's extent 1 in an operand that broadcasts it steps by 0 */
    for (int k = 0; k <= p->n_ops; k++) {
        int r = k < p->n_ops ? p->rank[k] : p->out_rank;
        const int *al = k < p->n_ops ? p->axis_label[k] : p->out_label;
        int64_t step = 1;
        for (int d = r - 1; d >= 0; d--) {
            int64_t e = k < p->n_ops ? c->in[k]->dims[d] : p->out_dims[d];
            if (e != 1)
                p->stride[k][al[d]] += step;
            step *= e;
        }
    }
    return CS_OK;
}

static cs_status einsum_infer(cs_op_call *c, cs_err *err)
{
    ein_plan p;
    cs_status st = ein_parse(c, &p, err);
    if (st)
        return st;
    for (int k = 0; k < p.n_ops; k++)
        if ((st = cs_op_need_float(c, k, err)) || (st = cs_op_same_dtype(c, 0, k, err)))
            return st;
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, p.out_rank, p.out_dims);
    return CS_OK;
}

typedef enum ein_rule { EIN_FORWARD, EIN_VJP, EIN_JVP, EIN_ROP } ein_rule;

static double rd(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_DOUBLE ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

static void acc(cs_tensor *t, int64_t i, double v)
{
    if (t->dtype == CS_DT_DOUBLE)
        ((double *)t->data)[i] += v;
    else
        ((float *)t->data)[i] += (float)v;
}

/* Product of the operands' elements except those in `skip` (bit mask). */
static double product_except(const ein_plan *p, const cs_tensor *const *x, const int64_t *off, unsigned skip)
{
    double v = 1;
    for (int k = 0; k < p->n_ops && v != 0; k++)
        if (!(skip >> k & 1))
            v *= rd(x[k], off[k]);
    return v;
}

/* One odometer walk over every label combination for one rule. */
static void ein_walk(const ein_plan *p, const cs_tensor *const *x, ein_rule rule, cs_tensor *y, const cs_op_ad *a)
{
    int used[EIN_MAX_LABELS], nu = 0;
    for (int l = 0; l < p->n_labels; l++)
        if (p->extent[l] > 0)
            used[nu++] = l;
        else if (p->extent[l] == 0)
            return; /* an empty axis: nothing to add */
    int64_t idx[EIN_MAX_LABELS] = {0}, off[EIN_MAX_OPERANDS + 1] = {0};
    const int no = p->n_ops;
    for (;;) {
        switch (rule) {
        case EIN_FORWARD: acc(y, off[no], product_except(p, x, off, 0)); break;
        case EIN_VJP: {
            double g = rd(a->gout[0], off[no]);
            for (int k = 0; g != 0 && k < no; k++)
                if (a->gin[k])
                    acc(a->gin[k], off[k], g * product_except(p, x, off, 1u << k));
            break;
        }
        case EIN_JVP: {
            double s = 0;
            for (int k = 0; k < no; k++)
                if (a->tin[k])
                    s += rd(a->tin[k], off[k]) * product_except(p, x, off, 1u << k);
            acc(a->tout[0], off[no], s);
            break;
        }
        case EIN_ROP: {
            double g = rd(a->gout[0], off[no]);
            for (int k = 0; g != 0 && k < no; k++) {
                if (!a->gin[k])
                    continue;
                double s = 0;
                for (int j = 0; j < no; j++)
                    if (j != k && a->tin[j])
                        s += rd(a->tin[j], off[j]) * product_except(p, x, off, 1u << k | 1u << j);
                acc(a->gin[k], off[k], g * s);
            }
            break;
        }
        }
        int d = nu - 1;
        for (; d >= 0; d--) {
            int l = used[d];
            for (int k = 0; k <= no; k++)
                off[k] += p->stride[k][l];
            if (++idx[l] < p->extent[l])
                break;
            for (int k = 0; k <= no; k++)
                off[k] -= p->stride[k][l] * p->extent[l];
            idx[l] = 0;
        }
        if (d < 0)
            return;
    }
}

static cs_status einsum_forward(cs_op_call *c, cs_err *err)
{
    ein_plan p;
    cs_status st = ein_parse(c, &p, err);
    if (st)
        return st;
    memset(c->out[0]->data, 0, cs_tensor_bytes(c->out[0]));
    ein_walk(&p, (const cs_tensor *const *)c->in, EIN_FORWARD, c->out[0], NULL);
    return CS_OK;
}

static cs_status einsum_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    ein_plan p;
    cs_status st = a->gout[0] ? ein_parse(c, &p, err) : CS_OK;
    if (!st && a->gout[0])
        ein_walk(&p, (const cs_tensor *const *)c->in, EIN_VJP, NULL, a);
    return st;
}

static cs_status einsum_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (!a->tout[0])
        return CS_OK;
    ein_plan p;
    cs_status st = ein_parse(c, &p, err);
    if (st)
        return st;
    memset(a->tout[0]->data, 0, cs_tensor_bytes(a->tout[0]));
    ein_walk(&p, (const cs_tensor *const *)c->in, EIN_JVP, NULL, a);
    return CS_OK;
}

static cs_status einsum_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    ein_plan p;
    cs_status st = a->gout[0] && c->n_in > 1 ? ein_parse(c, &p, err) : CS_OK;
    if (!st && a->gout[0] && c->n_in > 1)
        ein_walk(&p, (const cs_tensor *const *)c->in, EIN_ROP, NULL, a);
    return st;
}

const cs_op_def cs_op_Einsum = {.name = "Einsum", .min_opset = 12, .infer = einsum_infer, .forward = einsum_forward,
                                .vjp = einsum_vjp, .jvp = einsum_jvp, .rop = einsum_rop};
