/* The derivative engine on whole models, in float64: gradients, Hessian-
 * vector products, GGN-vector products and per-sample gradients against
 * central finite differences and against explicit matrices built from
 * them; the loss-Hessian factorisation and Monte-Carlo seeds against
 * their formulas. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "../test_model.h"
#include "../test_util.h"
#include "base/rng.h"
#include "interp/layer_kind.h"
#include "objective/objective.h"
#include "onnx/loader.h"

#define N_SAMPLES 7
#define BATCH 3 /* 7 = 3 + 3 + 1: full and tail plans both run */

/* Layer kinds whose per-sample gradients passed the finite-difference
 * check on some model: every row of the layer-kind table must be there. */
static bool kind_checked[64];

static void mark_kind_checked(const cs_layer_kind *k)
{
    for (int i = 0; i < cs_layer_kind_count() && i < 64; i++)
        if (cs_layer_kind_at(i) == k)
            kind_checked[i] = true;
}

/* Random float64 inputs of the model's per-sample shape and class labels. */
static void make_dataset(cs_dataset *ds, const cs_graph *g, int64_t classes, uint64_t seed)
{
    memset(ds, 0, sizeof *ds);
    const cs_tensor *decl = &g->values[g->inputs[0]].decl;
    cs_tensor_set_shape(&ds->x, CS_DT_DOUBLE, decl->ndim, decl->dims);
    ds->x.dims[0] = N_SAMPLES;
    cs_tensor_set_shape(&ds->y, CS_DT_INT64, 1, (int64_t[]){N_SAMPLES});
    if (cs_tensor_alloc(&ds->x, NULL) || cs_tensor_alloc(&ds->y, NULL))
        abort();
    cs_rng r;
    cs_rng_seed(&r, seed);
    for (int64_t i = 0; i < cs_tensor_numel(&ds->x); i++)
        ((double *)ds->x.data)[i] = cs_rng_normal(&r);
    for (int64_t i = 0; i < N_SAMPLES; i++)
        ((int64_t *)ds->y.data)[i] = (int64_t)(cs_rng_u64(&r) % (uint64_t)classes);
    ds->n = N_SAMPLES;
    ds->has_labels = ds->int_labels = true;
}

/* Pointer to flat parameter element i (the models are float64). */
static double *param_at(const cs_graph *g, int64_t i)
{
    for (int q = 0; q < g->n_params; q++) {
        const cs_param *P = &g->params[q];
        const cs_tensor *t = &g->values[P->value].init;
        if (i >= P->offset && i < P->offset + cs_tensor_numel(t))
            return (double *)t->data + (i - P->offset);
    }
    return NULL;
}

static double max_abs(const double *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const double *a, const double *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static const double EPS = 1e-5;

/* Logits of sample n (C values) at the current parameters. */
static void logits_of(cs_objective *o, int64_t n, double *z)
{
    cs_err err = {0};
    int64_t start = n - n % o->batch;
    int i = start + o->batch <= o->ds->n ? 0 : 1;
    if (cs_dataset_fill_inputs(o->ds, start, NULL, cs_plan_input(&o->plan[i], 0), &err) ||
        cs_plan_forward(&o->plan[i], &err))
        abort();
    const double *zz = o->plan[i].vals[o->head.logits_value].data;
    memcpy(z, zz + (n - start) * o->classes, sizeof(double) * (size_t)o->classes);
}

static void check_model(const char *name, cs_loss_kind loss)
{
    const char *lname = cs_loss_name(loss);
    cs_graph *g = test_load_model(name);
    if (!g)
        return;
    cs_err err = {0};
    const cs_tensor *out_decl = &g->values[g->outputs[0]].decl;
    int64_t C = out_decl->dims[out_decl->ndim - 1];
    cs_dataset ds;
    make_dataset(&ds, g, C, 42);
    cs_objective o;
    if (!ok(cs_objective_init(&o, g, &ds, NULL, loss, BATCH, CS_AD_HVP | CS_OBJ_WHOLE_BATCH, &err) == CS_OK,
            "%s/%s: objective (%s)", name, lname, err.msg)) {
        cs_dataset_free(&ds);
        cs_graph_free(g);
        return;
    }
    int64_t P = g->n_param_scalars;
    double *grad = calloc((size_t)P, sizeof(double)), *fd = calloc((size_t)P, sizeof(double));
    double *v = calloc((size_t)P, sizeof(double)), *hv = calloc((size_t)P, sizeof(double));
    double *gp = calloc((size_t)P, sizeof(double)), *gm = calloc((size_t)P, sizeof(double));
    double *H = calloc((size_t)(P * P), sizeof(double)), *G = calloc((size_t)(P * P), sizeof(double));
    double L;
    cs_rng r;
    cs_rng_seed(&r, 7);

    /* Gradient against central differences of the loss. */
    ok(cs_objective_gradient(&o, &L, grad, &err) == CS_OK, "%s/%s: gradient (%s)", name, lname, err.msg);
    for (int64_t i = 0; i < P; i++) {
        double *p = param_at(g, i), keep = *p, up, down;
        *p = keep + EPS;
        cs_status st = cs_objective_gradient(&o, &up, NULL, &err);
        *p = keep - EPS;
        st |= cs_objective_gradient(&o, &down, NULL, &err);
        *p = keep;
        fd[i] = st ? NAN : (up - down) / (2 * EPS);
    }
    double e = max_diff(grad, fd, P), s = max_abs(fd, P);
    ok(e <= 1e-7 * s + 1e-12, "%s/%s: gradient matches finite differences (max err %.2g of %.2g)", name,
       lname, e, s);

    /* Hessian-vector products: a random direction against differences of
     * gradients, then the explicit Hessian column by column. */
    for (int64_t i = 0; i < P; i++)
        v[i] = cs_rng_normal(&r);
    ok(cs_objective_hvp(&o, v, -1, hv, &err) == CS_OK, "%s/%s: hvp (%s)", name, lname, err.msg);
    for (int64_t i = 0; i < P; i++)
        *param_at(g, i) += EPS * v[i];
    cs_status st = cs_objective_gradient(&o, NULL, gp, &err);
    for (int64_t i = 0; i < P; i++)
        *param_at(g, i) -= 2 * EPS * v[i];
    st |= cs_objective_gradient(&o, NULL, gm, &err);
    for (int64_t i = 0; i < P; i++)
        *param_at(g, i) += EPS * v[i];
    for (int64_t i = 0; i < P; i++)
        fd[i] = (gp[i] - gm[i]) / (2 * EPS);
    e = max_diff(hv, fd, P), s = max_abs(fd, P);
    ok(!st && e <= 1e-6 * s, "%s/%s: H v matches differences of gradients (max err %.2g of %.2g)", name,
       lname, e, s);

    int good = 1;
    for (int64_t j = 0; j < P && good; j++) {
        memset(v, 0, sizeof(double) * (size_t)P);
        v[j] = 1;
        good = cs_objective_hvp(&o, v, -1, H + j * P, &err) == CS_OK;
        /* The same column with the direction declared to live on its layer. */
        int layer = -1;
        for (int q = 0; q < g->n_params; q++)
            if (j >= g->params[q].offset)
                layer = g->params[q].layer;
        good = good && cs_objective_hvp(&o, v, layer, hv, &err) == CS_OK &&
               max_diff(hv, H + j * P, P) <= 1e-12 * (1 + max_abs(hv, P));
    }
    ok(good, "%s/%s: explicit Hessian from %lld unit products (layer-restricted products agree) (%s)",
       name, lname, (long long)P, err.msg);
    double asym = 0;
    for (int64_t i = 0; i < P; i++)
        for (int64_t j = 0; j < P; j++)
            asym = fmax(asym, fabs(H[i * P + j] - H[j * P + i]));
    ok(asym <= 1e-10 * (1 + max_abs(H, P * P)), "%s/%s: the Hessian is symmetric (max |H - H^T| %.2g)", name,
       lname, asym);
    double worst = 0, scale = max_abs(H, P * P);
    for (int64_t j = 0; j < P; j++) {
        double *p = param_at(g, j), keep = *p;
        *p = keep + EPS;
        st = cs_objective_gradient(&o, NULL, gp, &err);
        *p = keep - EPS;
        st |= cs_objective_gradient(&o, NULL, gm, &err);
        *p = keep;
        for (int64_t i = 0; i < P; i++)
            worst = fmax(worst, fabs(H[j * P + i] - (gp[i] - gm[i]) / (2 * EPS)));
    }
    ok(!st && worst <= 1e-6 * scale, "%s/%s: every Hessian column matches differences of gradients "
       "(max err %.2g of %.2g)", name, lname, worst, scale);

    /* GGN: explicit (1/N) sum_n J_n^T Lambda_n J_n with J_n from central
     * differences of the logits and Lambda_n from the loss formula. */
    int64_t Cc = o.classes;
    double *J = calloc((size_t)(Cc * P), sizeof(double)), *z = calloc((size_t)Cc, sizeof(double));
    double *zp = calloc((size_t)Cc, sizeof(double)), *Lam = calloc((size_t)(Cc * Cc), sizeof(double));
    for (int64_t n = 0; n < N_SAMPLES; n++) {
        for (int64_t j = 0; j < P; j++) {
            double *p = param_at(g, j), keep = *p;
            *p = keep + EPS;
            logits_of(&o, n, zp);
            *p = keep - EPS;
            logits_of(&o, n, z);
            *p = keep;
            for (int64_t c = 0; c < Cc; c++)
                J[c * P + j] = (zp[c] - z[c]) / (2 * EPS);
        }
        logits_of(&o, n, z);
        double mx = z[0], sum = 0;
        for (int64_t c = 1; c < Cc; c++)
            mx = fmax(mx, z[c]);
        for (int64_t c = 0; c < Cc; c++)
            sum += (zp[c] = exp(z[c] - mx));
        for (int64_t a = 0; a < Cc; a++)
            for (int64_t b = 0; b < Cc; b++)
                Lam[a * Cc + b] = loss == CS_LOSS_MSE ? (a == b)
                                                      : (a == b) * zp[a] / sum - zp[a] * zp[b] / (sum * sum);
        for (int64_t i = 0; i < P; i++)
            for (int64_t j = 0; j < P; j++) {
                double acc = 0;
                for (int64_t a = 0; a < Cc; a++)
                    for (int64_t b = 0; b < Cc; b++)
                        acc += J[a * P + i] * Lam[a * Cc + b] * J[b * P + j];
                G[i * P + j] += acc / N_SAMPLES;
            }
    }
    worst = 0;
    scale = max_abs(G, P * P);
    good = 1;
    for (int64_t j = 0; j < P && good; j++) {
        memset(v, 0, sizeof(double) * (size_t)P);
        v[j] = 1;
        good = cs_objective_ggnvp(&o, v, -1, hv, &err) == CS_OK;
        for (int64_t i = 0; i < P; i++)
            worst = fmax(worst, fabs(hv[i] - G[i * P + j]));
    }
    ok(good && worst <= 1e-6 * scale, "%s/%s: G e_j equals explicit J^T Lambda J for every j (max err %.2g of %.2g) (%s)",
       name, lname, worst, scale, err.msg);

    /* Per-sample gradients from the captures: seed each sample's own
     * dl_n/dz; rows sum to the batch gradient and each row matches the
     * difference quotient of l_n alone. */
    cs_ad *ad = &o.ad[0];
    const cs_tensor *zt = &o.plan[0].vals[o.head.logits_value];
    st = cs_dataset_fill_inputs(&ds, 0, NULL, cs_plan_input(&o.plan[0], 0), &err);
    st |= cs_plan_forward(&o.plan[0], &err);
    cs_loss_grad_batch(&o.head, zt, &ds, 0, 1.0, cs_ad_seed(ad), o.lanes[0].work);
    ad->param_grads = true;
    st |= cs_ad_backward(ad, &err);
    memset(gp, 0, sizeof(double) * (size_t)P);
    cs_ad_add_param_vector(ad, false, 1.0, gp);
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *Ly = &g->layers[l];
        int64_t W = Ly->numel, off = g->params[Ly->first_param].offset;
        double *rows = calloc((size_t)(BATCH * W), sizeof(double));
        /* The finite differences below rerun the forward: redo the
         * forward and backward at the unperturbed point first. */
        cs_status pst = cs_dataset_fill_inputs(&ds, 0, NULL, cs_plan_input(&o.plan[0], 0), &err);
        pst = pst ? pst : cs_plan_forward(&o.plan[0], &err);
        cs_loss_grad_batch(&o.head, zt, &ds, 0, 1.0, cs_ad_seed(ad), o.lanes[0].work);
        pst = pst ? pst : cs_ad_backward(ad, &err);
        pst = pst ? pst : cs_ad_per_sample_grads(ad, l, rows, &err);
        double sum_err = 0, row_err = 0, rs = max_abs(gp + off, W);
        for (int64_t k = 0; k < W && !pst; k++) {
            double acc = 0;
            for (int64_t n = 0; n < BATCH; n++)
                acc += rows[n * W + k];
            sum_err = fmax(sum_err, fabs(acc - gp[off + k]));
        }
        for (int64_t n = 0; n < BATCH && !pst; n++)
            for (int64_t k = 0; k < W; k++) {
                double *p = param_at(g, off + k), keep = *p;
                *p = keep + EPS;
                logits_of(&o, n, zp);
                double up = cs_loss_sample(&o.head, zp, true, Cc, &ds, n, NULL);
                *p = keep - EPS;
                logits_of(&o, n, zp);
                double down = cs_loss_sample(&o.head, zp, true, Cc, &ds, n, NULL);
                *p = keep;
                row_err = fmax(row_err, fabs(rows[n * W + k] - (up - down) / (2 * EPS)));
            }
        if (!st && !pst && sum_err <= 1e-12 * (1 + rs) && row_err <= 1e-7 * (1 + rs))
            mark_kind_checked(Ly->kind);
        ok(!st && !pst && sum_err <= 1e-12 * (1 + rs) && row_err <= 1e-7 * (1 + rs),
           "%s/%s: per-sample gradients of layer %s (%s): sum err %.2g, per-sample err %.2g (%s)", name,
           lname, Ly->name, Ly->op_type, sum_err, row_err, err.msg);
        free(rows);
    }

    /* The unit-wise layout of every layer that has one: its slots name
     * each of the layer's parameters exactly once (the unit blocks are read
     * off the per-sample rows through them). */
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *Ly = &g->layers[l];
        cs_layer_layout lay;
        cs_status lst = cs_layer_layout_make(g, l, &lay, &err);
        if (!lst && lay.unit_idx) {
            int64_t W = Ly->numel, bad = 0;
            int *seen = calloc((size_t)W, sizeof(int));
            for (int64_t i = 0; i < lay.n_units * lay.unit_d; i++) {
                int64_t p = lay.unit_idx[i];
                if (p >= W || p < -1)
                    bad++;
                else if (p >= 0)
                    seen[p]++;
            }
            for (int64_t p = 0; p < W; p++)
                bad += seen[p] != 1;
            ok(bad == 0, "%s/%s: the %lld units of %d slots of layer %s (%s) hold each parameter once (%lld wrong)",
               name, lname, (long long)lay.n_units, (int)lay.unit_d, Ly->name, Ly->op_type, (long long)bad);
            free(seen);
        }
        ok(lst == CS_OK, "%s/%s: layout of layer %s (%s)", name, lname, Ly->name, err.msg);
        cs_layer_layout_free(&lay);
    }

    /* The exact GGN block of every layer from captures seeded with the
     * columns of the loss-Hessian factor (one backward per column, shared
     * forward): (1/N) sum_n sum_c g_nc g_nc^T equals the block of G. */
    double *work = calloc((size_t)(Cc * Cc + 2 * Cc), sizeof(double));
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *Ly = &g->layers[l];
        int64_t W = Ly->numel, off = g->params[Ly->first_param].offset;
        double *block = calloc((size_t)(W * W), sizeof(double));
        double *rows = calloc((size_t)(BATCH * W), sizeof(double));
        cs_status bst = CS_OK;
        for (int64_t start = 0; start < N_SAMPLES && !bst; start += BATCH) {
            int i = start + BATCH <= N_SAMPLES ? 0 : 1;
            cs_ad *adi = &o.ad[i];
            bst = cs_dataset_fill_inputs(&ds, start, NULL, cs_plan_input(&o.plan[i], 0), &err);
            bst = bst ? bst : cs_plan_forward(&o.plan[i], &err);
            const cs_tensor *zb = &o.plan[i].vals[o.head.logits_value];
            int64_t B = zb->dims[0];
            adi->param_grads = false; /* captures only */
            for (int64_t col = 0; col < Cc && !bst; col++) {
                cs_loss_seed_batch(&o.head, CS_SEED_FACTOR_COLUMN, col, zb, &ds, start, NULL,
                                   cs_ad_seed(adi), work);
                bst = cs_ad_backward(adi, &err);
                bst = bst ? bst : cs_ad_per_sample_grads(adi, l, rows, &err);
                for (int64_t n = 0; n < B && !bst; n++)
                    for (int64_t a = 0; a < W; a++)
                        for (int64_t b = 0; b < W; b++)
                            block[a * W + b] += rows[n * W + a] * rows[n * W + b] / N_SAMPLES;
            }
        }
        double berr = 0, bscale = 0;
        for (int64_t a = 0; a < W; a++)
            for (int64_t b = 0; b < W; b++) {
                double ref = G[(off + a) * P + off + b];
                bscale = fmax(bscale, fabs(ref));
                berr = fmax(berr, fabs(block[a * W + b] - ref));
            }
        ok(!bst && berr <= 1e-6 * bscale, "%s/%s: exact GGN block of %s from factor-column captures "
           "(max err %.2g of %.2g) (%s)", name, lname, Ly->name, berr, bscale, err.msg);
        free(block);
        free(rows);
    }
    free(work);

    free(J), free(z), free(zp), free(Lam);
    free(grad), free(fd), free(v), free(hv), free(gp), free(gm), free(H), free(G);
    cs_objective_free(&o);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* Lambda = S S^T for the factor handed to the exact Fisher / GGN, and the
 * Monte-Carlo seeds' second moment approaches Lambda. */
static void check_loss_factor(void)
{
    enum { C = 5 };
    double z[C] = {0.3, -1.2, 2.0, 0.1, -0.4}, S[C * C], work[2 * C], p[C], sum = 0;
    for (int c = 0; c < C; c++)
        sum += (p[c] = exp(z[c]));
    for (int c = 0; c < C; c++)
        p[c] /= sum;
    for (int kind = 0; kind < CS_LOSS_COUNT; kind++) {
        cs_loss_head h = {.kind = (cs_loss_kind)kind};
        cs_loss_hessian_factor(&h, z, C, S, work);
        double worst = 0;
        for (int a = 0; a < C; a++)
            for (int b = 0; b < C; b++) {
                double ss = 0;
                for (int c = 0; c < C; c++)
                    ss += S[a * C + c] * S[b * C + c];
                double lam = kind == CS_LOSS_MSE ? (a == b) : (a == b) * p[a] - p[a] * p[b];
                worst = fmax(worst, fabs(ss - lam));
            }
        ok(worst < 1e-15, "%s: S S^T reproduces the loss Hessian (max err %.2g)", cs_loss_name(h.kind), worst);

        /* E[g g^T] over sampled targets equals Lambda: 40000 draws, each
         * entry's standard error is below 1/sqrt(40000) = 0.005 for ce and
         * about 0.007 for mse (products of unit normals); 0.035 is > 5 of them. */
        cs_rng r;
        cs_rng_seed(&r, 99);
        double M[C * C] = {0}, g[C];
        int draws = 40000;
        for (int t = 0; t < draws; t++) {
            cs_loss_sampled_grad(&h, z, C, &r, g);
            for (int a = 0; a < C; a++)
                for (int b = 0; b < C; b++)
                    M[a * C + b] += g[a] * g[b] / draws;
        }
        worst = 0;
        for (int a = 0; a < C; a++)
            for (int b = 0; b < C; b++) {
                double lam = kind == CS_LOSS_MSE ? (a == b) : (a == b) * p[a] - p[a] * p[b];
                worst = fmax(worst, fabs(M[a * C + b] - lam));
            }
        ok(worst < 0.035, "%s: Monte-Carlo seeds' second moment approaches the loss Hessian (max err %.3f)",
           cs_loss_name(h.kind), worst);
    }
}

int main(void)
{
    static const char *const models[] = {"tiny_mlp64",   "tiny_cnn64",   "tiny_attn64",  "tiny_embed64",
                                         "tiny_norm64",  "tiny_gn21_64", "tiny_convt64", "tiny_seqfirst64",
                                         "tiny_lstm64",  "tiny_gru64",   "tiny_rnn64",
                                         "tiny_eparams64", "tiny_views64"};
    for (int m = 0; m < (int)(sizeof models / sizeof models[0]); m++) {
        check_model(models[m], CS_LOSS_CE);
        check_model(models[m], CS_LOSS_MSE);
    }
    check_loss_factor();
    /* The layer-kind table's contract: a kind is added with a model that
     * exercises it here (tests/models, tools/make_models.py). */
    for (int i = 0; i < cs_layer_kind_count(); i++)
        ok(i < 64 && kind_checked[i], "layer kind %s (%s): per-sample gradients checked by finite differences",
           cs_layer_kind_at(i)->name, cs_layer_kind_at(i)->op_type);
    return tap_done();
}
