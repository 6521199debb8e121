/* Hessian-aware quantization: rounding, Hutchinson traces per weight
 * block, and the exact bit allocation (quant.h states the conventions). */
#include "config.h"

#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp/layer_kind.h"
#include "spectral/lanczos.h"

bool cs_quant_layer(const cs_graph *g, int l)
{
    return g->layers[l].kind->prunable;
}

float cs_quant_scale(const double *x, int64_t n, int bits)
{
    double m = 0, qmax = (double)((1 << (bits - 1)) - 1);
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m > 0 ? (float)(m / qmax) : 1.0f;
}

double cs_quant_round(const double *x, int64_t n, int bits, float s, int8_t *q, double *y)
{
    double qmax = (double)((1 << (bits - 1)) - 1), err = 0;
    for (int64_t i = 0; i < n; i++) {
        /* nearbyint rounds half to even in the default rounding mode, as
         * QuantizeLinear does */
        double r = fmin(qmax, fmax(-qmax, nearbyint(x[i] / (double)s)));
        /* float32(s q), the value DequantizeLinear gives in float32 */
        double v = (double)(float)((double)s * r);
        if (q)
            q[i] = (int8_t)r;
        if (y)
            y[i] = v;
        err += (v - x[i]) * (v - x[i]);
    }
    return err;
}

/* H restricted to one weight block: v embedded in the whole parameter
 * vector (zero elsewhere, so only nodes downstream carry tangents). */
typedef struct block_op {
    cs_objective *obj;
    int layer;
    int64_t offset, dim;
    double *full_v, *full_y; /* [n_param_scalars] */
} block_op;

static cs_status block_hvp(void *vctx, const double *v, double *y, cs_err *err)
{
    block_op *b = vctx;
    memcpy(b->full_v + b->offset, v, sizeof(double) * (size_t)b->dim);
    cs_status st = cs_objective_hvp(b->obj, b->full_v, b->layer, b->full_y, err);
    if (!st)
        memcpy(y, b->full_y + b->offset, sizeof(double) * (size_t)b->dim);
    return st;
}

cs_status cs_quant_traces(cs_objective *obj, int probes, uint64_t seed, double *trace, double *se,
                          cs_err *err)
{
    const cs_graph *g = obj->g;
    if (probes < 2)
        return cs_fail(err, CS_ERR_USAGE, "Hutchinson's standard error needs at least 2 probes, got %d", probes);
    block_op b = {.obj = obj};
    b.full_v = calloc((size_t)g->n_param_scalars + 1, sizeof(double));
    b.full_y = calloc((size_t)g->n_param_scalars + 1, sizeof(double));
    cs_status st = b.full_v && b.full_y ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    for (int l = 0; l < g->n_layers && !st; l++) {
        trace[l] = se[l] = NAN;
        if (!cs_quant_layer(g, l))
            continue;
        const cs_param *w = &g->params[g->layers[l].first_param];
        b.layer = l;
        b.offset = w->offset;
        b.dim = cs_tensor_numel(&g->values[w->value].init);
        st = cs_hutchinson(block_hvp, &b, b.dim, probes, seed + (uint64_t)l, &trace[l], &se[l], NULL, err);
        memset(b.full_v + b.offset, 0, sizeof(double) * (size_t)b.dim);
    }
    free(b.full_v);
    free(b.full_y);
    return st;
}

/* One point of a Pareto frontier: total size and omega so far, and how it
 * was reached (the choice at this layer, the point of the previous one). */
typedef struct pareto_point {
    double size, omega;
    int choice;
    int64_t parent;
} pareto_point;

static int by_size_then_omega(const void *a, const void *b)
{
    const pareto_point *p = a, *q = b;
    if (p->size != q->size)
        return p->size < q->size ? -1 : 1;
    return p->omega < q->omega ? -1 : p->omega > q->omega;
}

cs_status cs_quant_allocate(int n, const int64_t *size, const int *bits, int n_bits, const double *omega,
                            double budget, int *choice, double *total_omega, cs_err *err)
{
    /* Frontier l holds the non-dominated (size, omega) pairs of layers
     * 0..l: sorted by size, omega strictly falling.  A pair over the budget
     * can never come back under it (sizes only grow), so it is dropped. */
    pareto_point **front = calloc((size_t)n + 1, sizeof *front);
    int64_t *len = calloc((size_t)n + 1, sizeof *len);
    cs_status st = front && len ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    pareto_point start = {0, 0, -1, -1};
    for (int l = 0; l < n && !st; l++) {
        const pareto_point *prev = l ? front[l - 1] : &start;
        int64_t np = l ? len[l - 1] : 1;
        pareto_point *cand = malloc(sizeof *cand * (size_t)(np * n_bits + 1));
        if (!cand) {
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for %lld allocation candidates",
                         (long long)(np * n_bits));
            break;
        }
        int64_t m = 0;
        for (int64_t i = 0; i < np; i++)
            for (int k = 0; k < n_bits; k++) {
                double s = prev[i].size + (double)size[l] * bits[k];
                if (s <= budget)
                    cand[m++] = (pareto_point){s, prev[i].omega + omega[(size_t)l * n_bits + k], k, i};
            }
        qsort(cand, (size_t)m, sizeof *cand, by_size_then_omega);
        int64_t kept = 0;
        for (int64_t i = 0; i < m; i++)
            if (kept == 0 || cand[i].omega < cand[kept - 1].omega)
                cand[kept++] = cand[i];
        front[l] = cand;
        len[l] = kept;
        if (kept == 0)
            st = cs_fail(err, CS_ERR_USAGE, "the size budget (%.0f bits) is below the smallest widths' size",
                         budget);
    }
    if (!st && n > 0) {
        /* the last frontier's smallest omega is its last point */
        int64_t at = len[n - 1] - 1;
        *total_omega = front[n - 1][at].omega;
        for (int l = n - 1; l >= 0; l--) {
            choice[l] = front[l][at].choice;
            at = front[l][at].parent;
        }
    } else if (!st) {
        *total_omega = 0;
    }
    for (int l = 0; front && l < n; l++)
        free(front[l]);
    free(front);
    free(len);
    return st;
}
