/* Central finite-difference checks of an operator's derivative rules, in
 * float64 (ggml's test-backend-ops idea, written for curvscope's cs_op_ad).
 *
 *   op_test t;  ... set up the op with float64 inputs (see op_test.h) ...
 *   fd_opts o = fd_default();
 *   fd_check_op("Conv 2-D groups=2", &t, FD_INPUTS(0, 1, 2), &o);
 *
 * For every input i in the mask (the differentiable ones) and every float
 * output, it checks, with gout and tangents drawn at random:
 *   vjp  gin_i = J_i^T gout  against d/dx <gout, f(x)> element by element
 *        (all elements of small inputs, a random sample of large ones), and
 *        that vjp adds into gin rather than overwriting it;
 *   jvp  tout = J t          against (f(x + e t) - f(x - e t)) / 2e;
 *   rop  second-order term   against (vjp(x + e t) - vjp(x - e t)) / 2e,
 *        or, for an op flagged CS_OP_LINEAR, that this difference is zero.
 * One TAP line per rule and input/output, and a "# covers RULE OP" note
 * (coverage.h) for each rule compared.  Inputs are perturbed in place and
 * restored. */
#ifndef CS_TESTS_FD_CHECK_H
#define CS_TESTS_FD_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "op_test.h"

#define FD_INPUTS(...) fd_mask_((int[]){__VA_ARGS__, -1})
static inline unsigned fd_mask_(const int *ids)
{
    unsigned m = 0;
    for (; *ids >= 0; ids++)
        m |= 1u << *ids;
    return m;
}

typedef struct fd_opts {
    double eps;           /* finite-difference step */
    double rtol, atol;    /* |rule - fd| <= atol + rtol * max|fd| over the tensor */
    int max_elems;        /* elements checked per input for vjp (sampled above) */
    uint64_t seed;
} fd_opts;

static inline fd_opts fd_default(void)
{
    fd_opts o = {.eps = 1e-6, .rtol = 1e-6, .atol = 1e-8, .max_elems = 400, .seed = 1};
    return o;
}

static inline double fd_rand_(uint64_t *s)
{
    /* splitmix64 -> uniform in [-1, 1) */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* A float64 tensor shaped like t, zero-filled (owned). */
static inline cs_tensor fd_like_(const cs_tensor *t)
{
    cs_tensor r = {0};
    cs_tensor_set_shape(&r, CS_DT_DOUBLE, t->ndim, t->dims);
    if (cs_tensor_alloc(&r, NULL) != CS_OK)
        abort();
    return r;
}

static inline double fd_dot_(const cs_tensor *a, const cs_tensor *b)
{
    double s = 0;
    for (int64_t i = 0; i < cs_tensor_numel(a); i++)
        s += ((const double *)a->data)[i] * ((const double *)b->data)[i];
    return s;
}

/* sum_k <gout_k, out_k> at the current inputs. */
static inline double fd_phi_(op_test *t, cs_tensor *gout)
{
    cs_err err = {0};
    if (op_test_forward(t, &err) != CS_OK)
        return NAN;
    double s = 0;
    for (int k = 0; k < t->node.n_outputs; k++)
        if (t->out[k] && t->out[k]->dtype == CS_DT_DOUBLE)
            s += fd_dot_(&gout[k], t->out[k]);
    return s;
}

/* Compare rule[] with fd[] (n values): max error against the scale of fd. */
static inline int fd_compare_(const double *rule, const double *fd, int64_t n, const fd_opts *o,
                              double *worst_out)
{
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(fd[i]));
    int good = 1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(rule[i] - fd[i]);
        if (!(e <= o->atol + o->rtol * scale) || isnan(rule[i]))
            good = 0;
        worst = fmax(worst, e);
    }
    *worst_out = worst;
    return good;
}

static inline cs_status fd_call_rule_(op_test *t, cs_status (*rule)(cs_op_call *, const cs_op_ad *, cs_err *),
                                      cs_tensor **gout, cs_tensor **gin, cs_tensor **tin,
                                      cs_tensor **tout, cs_err *err)
{
    cs_op_ad a = {.gout = gout, .gin = gin, .tin = tin, .tout = tout};
    return rule(&t->call, &a, err);
}

static inline void fd_check_op(const char *label, op_test *t, unsigned mask, const fd_opts *o)
{
    cs_err err = {0};
    const cs_op_def *op = t->node.op;
    if (!ok(op && op_test_run(t, &err) == CS_OK, "%s: forward (%s)", label, err.msg))
        return;
    if (!ok(op->vjp && op->jvp, "%s: has vjp and jvp rules", label))
        return;
    int n_in = t->node.n_inputs, n_out = t->node.n_outputs;
    uint64_t seed = o->seed;
    cs_tensor gout[OP_TEST_MAX] = {0}, gin[OP_TEST_MAX] = {0}, tin[OP_TEST_MAX] = {0};
    cs_tensor tout[OP_TEST_MAX] = {0}, rop[OP_TEST_MAX] = {0};
    cs_tensor *goutp[OP_TEST_MAX] = {0}, *ginp[OP_TEST_MAX] = {0}, *tinp[OP_TEST_MAX] = {0};
    cs_tensor *toutp[OP_TEST_MAX] = {0}, *ropp[OP_TEST_MAX] = {0};
    for (int k = 0; k < n_out; k++)
        if (t->out[k] && t->out[k]->dtype == CS_DT_DOUBLE) {
            gout[k] = fd_like_(t->out[k]);
            tout[k] = fd_like_(t->out[k]);
            for (int64_t j = 0; j < cs_tensor_numel(&gout[k]); j++)
                ((double *)gout[k].data)[j] = fd_rand_(&seed);
            goutp[k] = &gout[k];
            toutp[k] = &tout[k];
        }
    for (int i = 0; i < n_in; i++)
        if ((mask >> i) & 1 && t->in[i]) {
            gin[i] = fd_like_(t->in[i]);
            tin[i] = fd_like_(t->in[i]);
            rop[i] = fd_like_(t->in[i]);
            for (int64_t j = 0; j < cs_tensor_numel(&gin[i]); j++) {
                ((double *)gin[i].data)[j] = 0.5; /* vjp must add to this */
                ((double *)tin[i].data)[j] = fd_rand_(&seed);
            }
            ginp[i] = &gin[i];
            tinp[i] = &tin[i];
            ropp[i] = &rop[i];
        }

    /* ---- vjp ---- */
    cs_status st = fd_call_rule_(t, op->vjp, goutp, ginp, NULL, NULL, &err);
    ok(st == CS_OK, "%s: vjp runs (%s)", label, err.msg);
    for (int i = 0; i < n_in && st == CS_OK; i++) {
        if (!ginp[i])
            continue;
        double *x = (double *)t->in_src[i]->data;
        int64_t n = cs_tensor_numel(t->in[i]);
        int64_t m = n <= o->max_elems ? n : o->max_elems;
        double *rule = malloc(sizeof(double) * (size_t)(m + 1));
        double *fd = malloc(sizeof(double) * (size_t)(m + 1));
        for (int64_t s = 0; s < m; s++) {
            int64_t j = n <= o->max_elems ? s : (int64_t)((fd_rand_(&seed) + 1) * 0.5 * (double)n) % n;
            double keep = x[j];
            x[j] = keep + o->eps;
            double up = fd_phi_(t, gout);
            x[j] = keep - o->eps;
            double down = fd_phi_(t, gout);
            x[j] = keep;
            fd[s] = (up - down) / (2 * o->eps);
            rule[s] = ((double *)gin[i].data)[j] - 0.5;
        }
        double worst;
        int good = fd_compare_(rule, fd, m, o, &worst);
        ok(good, "%s: vjp input %d matches finite differences (%lld of %lld elements, max err %.2g)",
           label, i, (long long)m, (long long)n, worst);
        cover_note("vjp", op->name);
        free(rule);
        free(fd);
    }
    fd_phi_(t, gout); /* restore outputs at x */

    /* ---- jvp: outputs start as NaN, so a rule that adds instead of
     * writing is caught ---- */
    for (int k = 0; k < n_out; k++)
        if (toutp[k])
            for (int64_t j = 0; j < cs_tensor_numel(&tout[k]); j++)
                ((double *)tout[k].data)[j] = NAN;
    bool tinp_any = false; /* a jvp with no tangent in checks only zeros */
    for (int i = 0; i < n_in; i++)
        tinp_any = tinp_any || tinp[i];
    st = fd_call_rule_(t, op->jvp, NULL, NULL, tinp, toutp, &err);
    ok(st == CS_OK, "%s: jvp runs (%s)", label, err.msg);
    for (int k = 0; k < n_out && st == CS_OK; k++) {
        if (!toutp[k])
            continue;
        int64_t n = cs_tensor_numel(&tout[k]);
        double *fd = malloc(sizeof(double) * (size_t)(n + 1));
        for (int sign = 1; sign >= -1; sign -= 2) {
            for (int i = 0; i < n_in; i++)
                if (tinp[i])
                    for (int64_t j = 0; j < cs_tensor_numel(&tin[i]); j++)
                        ((double *)t->in_src[i]->data)[j] += sign * o->eps * ((double *)tin[i].data)[j];
            op_test_forward(t, &err);
            for (int64_t j = 0; j < n; j++)
                fd[j] = sign > 0 ? ((double *)t->out[k]->data)[j]
                                 : (fd[j] - ((double *)t->out[k]->data)[j]) / (2 * o->eps);
            for (int i = 0; i < n_in; i++)
                if (tinp[i])
                    for (int64_t j = 0; j < cs_tensor_numel(&tin[i]); j++)
                        ((double *)t->in_src[i]->data)[j] -= sign * o->eps * ((double *)tin[i].data)[j];
        }
        op_test_forward(t, &err);
        double worst;
        int good = fd_compare_(tout[k].data, fd, n, o, &worst);
        ok(good, "%s: jvp output %d matches finite differences (max err %.2g)", label, k, worst);
        if (tinp_any)
            cover_note("jvp", op->name);
        free(fd);
    }

    /* ---- rop: derivative of the vjp along the tangents ---- */
    cs_tensor vjp_up[OP_TEST_MAX] = {0}, vjp_down[OP_TEST_MAX] = {0};
    cs_tensor *upp[OP_TEST_MAX] = {0}, *downp[OP_TEST_MAX] = {0};
    for (int i = 0; i < n_in; i++)
        if (ginp[i]) {
            vjp_up[i] = fd_like_(t->in[i]);
            vjp_down[i] = fd_like_(t->in[i]);
            upp[i] = &vjp_up[i];
            downp[i] = &vjp_down[i];
        }
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (int i = 0; i < n_in; i++)
            if (tinp[i])
                for (int64_t j = 0; j < cs_tensor_numel(&tin[i]); j++)
                    ((double *)t->in_src[i]->data)[j] += sign * o->eps * ((double *)tin[i].data)[j];
        op_test_forward(t, &err);
        fd_call_rule_(t, op->vjp, goutp, sign > 0 ? upp : downp, NULL, NULL, &err);
        for (int i = 0; i < n_in; i++)
            if (tinp[i])
                for (int64_t j = 0; j < cs_tensor_numel(&tin[i]); j++)
                    ((double *)t->in_src[i]->data)[j] -= sign * o->eps * ((double *)tin[i].data)[j];
    }
    op_test_forward(t, &err);
    bool linear = op->flags & CS_OP_LINEAR;
    if (op->rop) {
        st = fd_call_rule_(t, op->rop, goutp, ropp, tinp, NULL, &err);
        ok(st == CS_OK, "%s: rop runs (%s)", label, err.msg);
    } else {
        ok(linear, "%s: has a rop rule or is flagged CS_OP_LINEAR", label);
    }
    for (int i = 0; i < n_in; i++) {
        if (!ginp[i])
            continue;
        int64_t n = cs_tensor_numel(&rop[i]);
        double *fd = malloc(sizeof(double) * (size_t)(n + 1));
        for (int64_t j = 0; j < n; j++)
            fd[j] = (((double *)vjp_up[i].data)[j] - ((double *)vjp_down[i].data)[j]) / (2 * o->eps);
        double worst;
        if (op->rop) {
            int good = fd_compare_(rop[i].data, fd, n, o, &worst);
            ok(good, "%s: rop input %d matches finite differences of the vjp (max err %.2g)", label, i,
               worst);
            cover_note("rop", op->name);
        } else {
            /* Zero second-order term: the vjp does not move with x. */
            double scale = 0;
            for (int64_t j = 0; j < cs_tensor_numel(&gin[i]); j++)
                scale = fmax(scale, fabs(((double *)gin[i].data)[j] - 0.5));
            worst = 0;
            for (int64_t j = 0; j < n; j++)
                worst = fmax(worst, fabs(fd[j]));
            ok(worst <= o->atol + o->rtol * fmax(scale, 1.0),
               "%s: linear op: vjp input %d does not change along the tangent (max %.2g)", label, i, worst);
            cover_note("rop", op->name);
        }
        free(fd);
    }
    for (int k = 0; k < OP_TEST_MAX; k++) {
        cs_tensor_free(&gout[k]);
        cs_tensor_free(&tout[k]);
    }
    for (int i = 0; i < OP_TEST_MAX; i++) {
        cs_tensor_free(&gin[i]);
        cs_tensor_free(&tin[i]);
        cs_tensor_free(&rop[i]);
        cs_tensor_free(&vjp_up[i]);
        cs_tensor_free(&vjp_down[i]);
    }
}

#endif
