#include "objective/loss.h"

#include "base/rng.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static const char *const loss_names[] = {[CS_LOSS_CE] = "ce", [CS_LOSS_MSE] = "mse"};
static_assert(sizeof loss_names / sizeof loss_names[0] == CS_LOSS_COUNT, "name every loss");

cs_status cs_loss_parse(const char *name, cs_loss_kind *out, cs_err *err)
{
    for (int k = 0; k < CS_LOSS_COUNT; k++)
        if (strcmp(name, loss_names[k]) == 0) {
            *out = (cs_loss_kind)k;
            return CS_OK;
        }
    return cs_fail(err, CS_ERR_USAGE, "unknown loss '%s' (expected ce or mse)", name);
}

const char *cs_loss_name(cs_loss_kind k)
{
    return (unsigned)k < CS_LOSS_COUNT ? loss_names[k] : "?";
}

/* A Softmax / LogSoftmax over the last axis of a 2-D input. */
static bool is_class_normaliser(const cs_graph *g, const cs_node *n)
{
    if (strcmp(n->op_type, "Softmax") != 0 && strcmp(n->op_type, "LogSoftmax") != 0)
        return false;
    if (n->n_inputs != 1 || n->inputs[0] < 0)
        return false;
    int64_t axis = cs_node_attr_int(n, "axis", n->opset >= 13 ? -1 : 1);
    /* The input rank is known only at prepare; the class axis of a 2-D
     * [N, C] input is 1 == -1, which is what classifiers export. */
    return axis == -1 || axis == 1;
}

cs_status cs_loss_head_init(cs_loss_head *h, const cs_graph *g, cs_loss_kind kind, cs_err *err)
{
    memset(h, 0, sizeof *h);
    h->kind = kind;
    h->output = 0;
    h->logits_value = g->outputs[0];
    int p = g->values[h->logits_value].producer;
    if (p >= 0 && is_class_normaliser(g, &g->nodes[p])) {
        h->through = g->nodes[p].name;
        h->through_op = g->nodes[p].op_type;
        h->logits_value = g->nodes[p].inputs[0];
    }
    if (!cs_dtype_is_float(g->values[g->outputs[0]].decl.dtype) &&
        g->values[g->outputs[0]].decl.dtype != CS_DT_UNDEFINED)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "output '%s' is %s; the loss needs float logits",
                       g->values[g->outputs[0]].name,
                       cs_dtype_name(g->values[g->outputs[0]].decl.dtype));
    return CS_OK;
}

cs_status cs_loss_check_labels(const cs_loss_head *h, const cs_dataset *ds, int64_t classes,
                               cs_err *err)
{
    if (!ds->has_labels)
        return cs_fail(err, CS_ERR_USAGE, "the %s loss needs labels (--labels SPEC)",
                       cs_loss_name(h->kind));
    if (ds->int_labels) {
        for (int64_t i = 0; i < ds->n; i++) {
            int64_t y = cs_dataset_label(ds, i);
            if (y < 0 || y >= classes)
                return cs_fail(err, CS_ERR_FORMAT,
                               "label %lld of sample %lld is outside 0..%lld (the model has %lld outputs)",
                               (long long)y, (long long)(ds->first + i), (long long)classes - 1, (long long)classes);
        }
        return CS_OK;
    }
    if (h->kind == CS_LOSS_CE)
        return cs_fail(err, CS_ERR_FORMAT, "the ce loss needs integer class labels, the labels are %s",
                       cs_dtype_name(ds->y.dtype));
    if (cs_dataset_target_width(ds) != classes)
        return cs_fail(err, CS_ERR_SHAPE, "targets have %lld values per sample, the model outputs %lld",
                       (long long)cs_dataset_target_width(ds), (long long)classes);
    return CS_OK;
}

static inline double zval(const void *z, bool is_double, int64_t c)
{
    return is_double ? ((const double *)z)[c] : (double)((const float *)z)[c];
}

double cs_loss_sample(const cs_loss_head *h, const void *z, bool is_double, int64_t C,
                      const cs_dataset *ds, int64_t i, double *grad)
{
    if (h->kind == CS_LOSS_CE) {
        /* logsumexp with the max subtracted; dl/dz = softmax(z) - e_y. */
        int64_t y = cs_dataset_label(ds, i);
        double m = zval(z, is_double, 0);
        for (int64_t c = 1; c < C; c++)
            m = fmax(m, zval(z, is_double, c));
        double s = 0;
        for (int64_t c = 0; c < C; c++)
            s += exp(zval(z, is_double, c) - m);
        double lse = m + log(s);
        if (grad)
            for (int64_t c = 0; c < C; c++)
                grad[c] = exp(zval(z, is_double, c) - lse) - (c == y);
        return lse - zval(z, is_double, y);
    }
    /* mse: 1/2 ||z - y||^2, dl/dz = z - y. */
    double loss = 0;
    if (ds->int_labels) {
        int64_t y = cs_dataset_label(ds, i);
        for (int64_t c = 0; c < C; c++) {
            double d = zval(z, is_double, c) - (c == y);
            loss += 0.5 * d * d;
            if (grad)
                grad[c] = d;
        }
        return loss;
    }
    for (int64_t c = 0; c < C; c++) {
        double d = zval(z, is_double, c) - cs_tensor_get_f64(&ds->y, i * C + c);
        loss += 0.5 * d * d;
        if (grad)
            grad[c] = d;
    }
    return loss;
}

/* Softmax of row z into p (double). */
static void softmax_row(const double *z, int64_t C, double *p)
{
    double m = z[0], s = 0;
    for (int64_t c = 1; c < C; c++)
        m = fmax(m, z[c]);
    for (int64_t c = 0; c < C; c++)
        s += (p[c] = exp(z[c] - m));
    for (int64_t c = 0; c < C; c++)
        p[c] /= s;
}

static inline double get(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_DOUBLE ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

static inline void put(cs_tensor *t, int64_t i, double v)
{
    if (t->dtype == CS_DT_DOUBLE)
        ((double *)t->data)[i] = v;
    else
        ((float *)t->data)[i] = (float)v;
}

void cs_loss_grad_batch(const cs_loss_head *h, const cs_tensor *z, const cs_dataset *ds,
                        int64_t start, double scale, cs_tensor *out, double *work)
{
    int64_t B = z->dims[0], C = cs_tensor_numel(z) / B;
    bool dbl = z->dtype == CS_DT_DOUBLE;
    size_t es = cs_dtype_size(z->dtype);
    for (int64_t b = 0; b < B; b++) {
        const void *row = (const char *)z->data + (size_t)(b * C) * es;
        cs_loss_sample(h, row, dbl, C, ds, start + b, work);
        for (int64_t c = 0; c < C; c++)
            put(out, b * C + c, scale * work[c]);
    }
}

void cs_loss_hvp_batch(const cs_loss_head *h, const cs_tensor *z, const cs_tensor *tz,
                       double scale, cs_tensor *out, double *work)
{
    int64_t B = z->dims[0], C = cs_tensor_numel(z) / B;
    double *zr = work, *p = work + C;
    for (int64_t b = 0; b < B; b++) {
        if (h->kind == CS_LOSS_MSE) {
            for (int64_t c = 0; c < C; c++)
                put(out, b * C + c, scale * get(tz, b * C + c));
            continue;
        }
        for (int64_t c = 0; c < C; c++)
            zr[c] = get(z, b * C + c);
        softmax_row(zr, C, p);
        double ptz = 0;
        for (int64_t c = 0; c < C; c++)
            ptz += p[c] * get(tz, b * C + c);
        for (int64_t c = 0; c < C; c++)
            put(out, b * C + c, scale * p[c] * (get(tz, b * C + c) - ptz));
    }
}

void cs_loss_hessian_factor(const cs_loss_head *h, const double *z, int64_t C, double *S,
                            double *work)
{
    memset(S, 0, sizeof(double) * (size_t)(C * C));
    if (h->kind == CS_LOSS_MSE) {
        for (int64_t c = 0; c < C; c++)
            S[c * C + c] = 1.0;
        return;
    }
    double *p = work;
    softmax_row(z, C, p);
    for (int64_t c = 0; c < C; c++) {
        double r = sqrt(p[c]);
        for (int64_t i = 0; i < C; i++)
            S[i * C + c] = r * ((i == c) - p[i]);
    }
}

void cs_loss_sampled_grad(const cs_loss_head *h, const double *z, int64_t C, cs_rng *rng,
                          double *grad)
{
    if (h->kind == CS_LOSS_MSE) {
        for (int64_t c = 0; c < C; c++)
            grad[c] = -cs_rng_normal(rng);
        return;
    }
    softmax_row(z, C, grad);
    int64_t y = cs_rng_categorical(rng, grad, C);
    grad[y] -= 1.0;
}

void cs_loss_seed_batch(const cs_loss_head *h, cs_seed_kind kind, int64_t column,
                        const cs_tensor *z, const cs_dataset *ds, int64_t start, cs_rng *rng,
                        cs_tensor *out, double *work)
{
    if (kind == CS_SEED_TRUE_LABEL) {
        cs_loss_grad_batch(h, z, ds, start, 1.0, out, work);
        return;
    }
    int64_t B = z->dims[0], C = cs_tensor_numel(z) / B;
    double *zr = work, *row = work + C, *S = work + 2 * C;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t c = 0; c < C; c++)
            zr[c] = get(z, b * C + c);
        if (kind == CS_SEED_SAMPLED) {
            cs_loss_sampled_grad(h, zr, C, rng, row);
        } else {
            cs_loss_hessian_factor(h, zr, C, S, row);
            for (int64_t c = 0; c < C; c++)
                row[c] = S[c * C + column];
        }
        for (int64_t c = 0; c < C; c++)
            put(out, b * C + c, row[c]);
    }
}

double cs_loss_batch_sum(const cs_loss_head *h, const cs_tensor *z, const cs_dataset *ds,
                         int64_t start, int64_t *hits)
{
    int64_t B = z->dims[0], C = cs_tensor_numel(z) / B;
    bool dbl = z->dtype == CS_DT_DOUBLE;
    size_t es = cs_dtype_size(z->dtype);
    double sum = 0;
    int64_t n_hits = 0;
    for (int64_t b = 0; b < B; b++) {
        const char *row = (const char *)z->data + (size_t)(b * C) * es;
        sum += cs_loss_sample(h, row, dbl, C, ds, start + b, NULL);
        if (hits && ds->int_labels) {
            int64_t best = 0;
            for (int64_t c = 1; c < C; c++)
                if (get(z, b * C + c) > get(z, b * C + best))
                    best = c;
            n_hits += best == cs_dataset_label(ds, start + b);
        }
    }
    if (hits)
        *hits = n_hits;
    return sum;
}
