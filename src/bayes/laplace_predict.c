/* Predictives of the Laplace posterior on a test set (bayes/laplace.h):
 * the MAP model, and the linearised model f(x; θ) ≈ f(x; θ*) + J (θ − θ*)
 * (the GLM predictive of Immer, Korzepa & Bauer 2021), whose logits are
 * Gaussian, N(z*, Σ) with Σ = J P⁻¹ Jᵀ, read by the probit approximation
 * or by Monte Carlo; and the network itself at weights sampled from the
 * posterior (Laplace Redux's "nn" predictive, Daxberger et al. 2021). */
#include "bayes/laplace.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "curv/alloc.h"
#include "objective/objective.h"

#define LA_ECE_BINS 15

const char *cs_la_method_name(cs_la_method m)
{
    static const char *const names[CS_LA_METHOD_COUNT] = {"map", "glm_probit", "glm_mc", "nn_mc"};
    return names[m];
}

cs_status cs_la_method_parse_list(const char *list, unsigned *mask, cs_err *err)
{
    *mask = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int m = 0; m < CS_LA_METHOD_COUNT; m++) {
            const char *name = cs_la_method_name((cs_la_method)m);
            if (strlen(name) == len && strncmp(name, p, len) == 0)
                found = m;
        }
        if (len == 3 && strncmp(p, "all", 3) == 0)
            *mask |= (1u << CS_LA_METHOD_COUNT) - 1;
        else if (found < 0)
            return cs_fail(err, CS_ERR_USAGE,
                           "unknown predictive '%.*s' (expected map, glm_probit, glm_mc, nn_mc or all)", (int)len, p);
        else
            *mask |= 1u << found;
        p += len + (p[len] == ',');
    }
    if (!*mask)
        return cs_fail(err, CS_ERR_USAGE, "empty list of predictives");
    return CS_OK;
}

/* Running sums of the metrics of one method. */
typedef struct metric_sums {
    double nll, hits, brier;
    double bin_n[LA_ECE_BINS], bin_conf[LA_ECE_BINS], bin_hit[LA_ECE_BINS];
} metric_sums;

static void add_sample(metric_sums *m, const double *p, int64_t C, int64_t y)
{
    int64_t top = 0;
    for (int64_t c = 0; c < C; c++) {
        top = p[c] > p[top] ? c : top;
        double d = p[c] - (c == y);
        m->brier += d * d;
    }
    m->nll -= log(fmax(p[y], 1e-300));
    m->hits += top == y;
    int b = (int)(p[top] * LA_ECE_BINS);
    b = b >= LA_ECE_BINS ? LA_ECE_BINS - 1 : b;
    m->bin_n[b]++, m->bin_conf[b] += p[top], m->bin_hit[b] += top == y;
}

static cs_la_metrics finish(const metric_sums *m, double n)
{
    cs_la_metrics r = {m->nll / n, m->hits / n, 0, m->brier / n};
    /* ECE = Σ_b (n_b / n) |acc_b − conf_b| (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017) */
    for (int b = 0; b < LA_ECE_BINS; b++)
        r.ece += fabs(m->bin_hit[b] - m->bin_conf[b]) / n;
    return r;
}

static void softmax(const double *z, int64_t C, double *p)
{
    double mx = z[0], s = 0;
    for (int64_t c = 1; c < C; c++)
        mx = fmax(mx, z[c]);
    for (int64_t c = 0; c < C; c++)
        s += (p[c] = exp(z[c] - mx));
    for (int64_t c = 0; c < C; c++)
        p[c] /= s;
}

/* Σ = J P⁻¹ Jᵀ of one test input: J [C][D] the logits' Jacobian over the
 * posterior's parameters, sig [C][C]; work holds D·C doubles (full) or a
 * layer's C·dG·dA (kfac). */
static cs_status logit_covariance(const cs_laplace *la, const double *J, int64_t C, double *sig, double *work,
                                  cs_err *err)
{
    int64_t D = la->D;
    memset(sig, 0, sizeof(double) * (size_t)(C * C));
    if (la->repr == CS_REPR_FULL) {
        /* P = UᵀU: X = U⁻ᵀ Jᵀ, Σ = Xᵀ X */
        for (int64_t k = 0; k < D; k++)
            for (int64_t c = 0; c < C; c++)
                work[k * C + c] = J[c * D + k];
        lapack_int info = LAPACKE_dtrtrs(LAPACK_ROW_MAJOR, 'U', 'T', 'N', (lapack_int)D, (lapack_int)C, la->chol,
                                         (lapack_int)D, work, (lapack_int)C);
        if (info != 0)
            return cs_fail(err, CS_ERR_RUNTIME, "triangular solve with the posterior's factor failed (info %d)",
                           (int)info);
        for (int64_t k = 0; k < D; k++)
            for (int64_t a = 0; a < C; a++)
                for (int64_t b = 0; b < C; b++)
                    sig[a * C + b] += work[k * C + a] * work[k * C + b];
        return CS_OK;
    }
    for (int i = 0; i < la->n_layers; i++) {
        const cs_la_layer *L = &la->layers[i];
        if (la->repr == CS_REPR_DIAG) {
            for (int64_t k = 0; k < L->W; k++) {
                double inv = 1.0 / (fmax(L->h[k], 0) + L->prior);
                for (int64_t a = 0; a < C; a++)
                    for (int64_t b = 0; b < C; b++)
                        sig[a * C + b] += J[a * D + L->start + k] * J[b * D + L->start + k] * inv;
            }
            continue;
        }
        /* K-FAC: in the eigenbasis (Q_G ⊗ Q_A) the precision is diagonal,
         * N μ_i λ_j + δ: rotate each class's row V_c [dG, dA] to
         * Q_Gᵀ V_c Q_A and sum the products over the diagonal's inverse */
        int64_t dG = L->dG, dA = L->dA, blk = dG * dA;
        for (int64_t q = 0; q < L->groups; q++) {
            double *V = work, *T = work + C * blk;
            memset(V, 0, sizeof(double) * (size_t)(C * blk));
            for (int64_t k = 0; k < L->W; k++) {
                const int64_t *ix = L->kron + 3 * k;
                if (ix[0] != q)
                    continue;
                for (int64_t c = 0; c < C; c++)
                    V[c * blk + ix[1] * dA + ix[2]] = J[c * D + L->start + k];
            }
            const double *QA = L->QA + q * dA * dA, *QG = L->QG + q * dG * dG;
            for (int64_t c = 0; c < C; c++) {
                double *Vc = V + c * blk, *Tc = T + c * blk;
                /* Tc = QGᵀ Vc, then Vc (read no more) = Tc QA, copied back */
                for (int64_t u = 0; u < dG; u++)
                    for (int64_t f = 0; f < dA; f++) {
                        double s = 0;
                        for (int64_t g = 0; g < dG; g++)
                            s += QG[g * dG + u] * Vc[g * dA + f];
                        Tc[u * dA + f] = s;
                    }
                for (int64_t u = 0; u < dG; u++)
                    for (int64_t f = 0; f < dA; f++) {
                        double s = 0;
                        for (int64_t e = 0; e < dA; e++)
                            s += Tc[u * dA + e] * QA[e * dA + f];
                        Vc[u * dA + f] = s;
                    }
                memcpy(Tc, Vc, sizeof(double) * (size_t)blk);
            }
            for (int64_t u = 0; u < dG; u++)
                for (int64_t f = 0; f < dA; f++) {
                    double inv = 1.0 / (fmax(L->lG[q * dG + u] * L->lA[q * dA + f], 0) + L->prior);
                    for (int64_t a = 0; a < C; a++)
                        for (int64_t b = 0; b < C; b++)
                            sig[a * C + b] += T[a * blk + u * dA + f] * T[b * blk + u * dA + f] * inv;
                }
        }
    }
    return CS_OK;
}

/* The MAP and linearised predictives' sums: one forward and C backwards
 * per test batch. */
static cs_status glm_pass(const cs_graph *g, const cs_dataset *ts, const cs_laplace *la, const cs_norm *norm,
                          int64_t batch, int mc_samples, uint64_t seed, metric_sums *sums, cs_err *err)
{
    /* the Jacobians of a batch, B·C·D doubles, kept to about 32 MiB */
    int64_t per = la->classes * la->D, cap = per > 0 ? ((int64_t)1 << 22) / per : batch;
    batch = cap < 1 ? 1 : cap < batch ? cap : batch;
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ts, norm, CS_LOSS_CE, batch, CS_AD_GRAD | CS_OBJ_WHOLE_BATCH, err);
    if (st)
        return st;
    int64_t C = obj.classes, D = la->D, B = obj.batch, wmax = D * C;
    for (int i = 0; i < la->n_layers; i++)
        wmax = la->layers[i].W > wmax ? la->layers[i].W : wmax;
    for (int i = 0; la->repr == CS_REPR_KFAC && i < la->n_layers; i++)
        wmax = 2 * C * la->layers[i].dG * la->layers[i].dA > wmax ? 2 * C * la->layers[i].dG * la->layers[i].dA : wmax;
    double *J = NULL, *rows = NULL, *work = NULL, *small = NULL;
    if ((st = cs_curv_zalloc(&J, (size_t)(B * C * D), err, "the test logits' Jacobians")) ||
        (st = cs_curv_zalloc(&rows, (size_t)(B * wmax), err, "the per-sample Jacobian rows")) ||
        (st = cs_curv_zalloc(&work, (size_t)wmax, err, "the predictive's work")) ||
        (st = cs_curv_zalloc(&small, (size_t)(4 * C * C + 4 * C), err, "the logit covariance")))
        goto done;
    cs_rng rng;
    cs_rng_seed(&rng, seed);
    double *sig = small, *Lc = small + C * C, *z = Lc + C * C, *p = z + C, *zs = p + C, *acc = zs + C;
    for (int64_t start = 0; start < ts->n && !st; start += B) {
        int which = start + B <= ts->n ? 0 : 1;
        cs_plan *pl = &obj.plan[which];
        cs_ad *ad = &obj.ad[which];
        if ((st = cs_dataset_fill_inputs(ts, start, norm, cs_plan_input(pl, 0), err)) ||
            (st = cs_plan_forward(pl, err)))
            break;
        const cs_tensor *zt = &pl->vals[obj.head.logits_value];
        int64_t nb = zt->dims[0];
        /* row c of sample b's Jacobian: the per-sample gradient of z_{b,c},
         * one backward seeded with e_c for every sample */
        for (int64_t c = 0; c < C && !st; c++) {
            cs_tensor *seed_t = cs_ad_seed(ad);
            for (int64_t k = 0; k < nb * C; k++)
                cs_tensor_set_f64(seed_t, k, k % C == c ? 1.0 : 0.0);
            ad->param_grads = false;
            if ((st = cs_ad_backward(ad, err)))
                break;
            for (int i = 0; i < la->n_layers && !st; i++) {
                const cs_la_layer *L = &la->layers[i];
                if ((st = cs_ad_per_sample_grads(ad, L->layer, rows, err)))
                    break;
                for (int64_t b = 0; b < nb; b++)
                    memcpy(J + (b * C + c) * D + L->start, rows + b * L->W, sizeof(double) * (size_t)L->W);
            }
        }
        for (int64_t b = 0; b < nb && !st; b++) {
            int64_t y = cs_dataset_label(ts, start + b);
            for (int64_t c = 0; c < C; c++)
                z[c] = cs_tensor_get_f64(zt, b * C + c);
            softmax(z, C, p);
            add_sample(&sums[CS_LA_MAP], p, C, y);
            if ((st = logit_covariance(la, J + b * C * D, C, sig, work, err)))
                break;
            /* probit: softmax(z_c / sqrt(1 + π/8 Σ_cc)), the multiclass
             * extension of MacKay 1992's κ used by Immer et al. 2021 (their
             * eq. for the GLM predictive) and Lu, Ie & Sha 2020 */
            for (int64_t c = 0; c < C; c++)
                zs[c] = z[c] / sqrt(1 + M_PI / 8 * fmax(sig[c * C + c], 0));
            softmax(zs, C, p);
            add_sample(&sums[CS_LA_GLM_PROBIT], p, C, y);
            /* Monte Carlo: z + L ε, L L ᵀ = Σ (+ a jitter of 1e-10 max Σ_cc for
             * the softmax's null direction) */
            memcpy(Lc, sig, sizeof(double) * (size_t)(C * C));
            double mx = 0;
            for (int64_t c = 0; c < C; c++)
                mx = fmax(mx, Lc[c * C + c]);
            for (int64_t c = 0; c < C; c++)
                Lc[c * C + c] += 1e-10 * mx + 1e-300;
            if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)C, Lc, (lapack_int)C) != 0) {
                st = cs_fail(err, CS_ERR_RUNTIME, "the linearised logits' covariance of test sample %lld is not "
                                                  "positive semi-definite", (long long)(start + b));
                break;
            }
            memset(acc, 0, sizeof(double) * (size_t)C);
            for (int s = 0; s < mc_samples; s++) {
                for (int64_t c = 0; c < C; c++)
                    p[c] = cs_rng_normal(&rng);
                for (int64_t c = 0; c < C; c++) {
                    double v = z[c];
                    for (int64_t e = 0; e <= c; e++)
                        v += Lc[c * C + e] * p[e];
                    zs[c] = v;
                }
                softmax(zs, C, p);
                for (int64_t c = 0; c < C; c++)
                    acc[c] += p[c] / mc_samples;
            }
            add_sample(&sums[CS_LA_GLM_MC], acc, C, y);
        }
    }
done:
    free(J), free(rows), free(work), free(small);
    cs_objective_free(&obj);
    return st;
}

/* θ [D] into the posterior's parameters of g (their dtype). */
static void write_posterior(cs_graph *g, const cs_laplace *la, const double *theta)
{
    for (int q = 0; q < g->n_params; q++) {
        cs_tensor *t = &g->values[g->params[q].value].init;
        int64_t off = g->params[q].offset;
        for (int i = 0; i < la->n_layers; i++) {
            const cs_la_layer *L = &la->layers[i];
            if (off >= L->offset && off < L->offset + L->W)
                cs_convert(t->data, t->dtype, theta + L->start + (off - L->offset), CS_DT_DOUBLE,
                           cs_tensor_numel(t));
        }
    }
}

/* probs [n, C] += weight · softmax(f(x_n)) over the test set at g's weights now. */
static cs_status add_probs(cs_objective *obj, const cs_dataset *ts, const cs_norm *norm, double weight,
                           double *probs, double *z, cs_err *err)
{
    int64_t C = obj->classes, B = obj->batch;
    for (int64_t start = 0; start < ts->n; start += B) {
        cs_plan *pl = &obj->plan[start + B <= ts->n ? 0 : 1];
        cs_status st = cs_dataset_fill_inputs(ts, start, norm, cs_plan_input(pl, 0), err);
        if (st || (st = cs_plan_forward(pl, err)))
            return st;
        const cs_tensor *zt = &pl->vals[obj->head.logits_value];
        for (int64_t b = 0; b < zt->dims[0]; b++) {
            double *p = probs + (start + b) * C;
            for (int64_t c = 0; c < C; c++)
                z[c] = cs_tensor_get_f64(zt, b * C + c);
            softmax(z, C, z + C);
            for (int64_t c = 0; c < C; c++)
                p[c] += weight * z[C + c];
        }
    }
    return CS_OK;
}

/* The MAP model alone (without the linearised ones) and the sampled
 * networks: forwards only.  The network predictive averages the softmax
 * probabilities over weight samples θ_s ~ N(θ*, P⁻¹), the whole draw made
 * before a pass over the test set so that one sample's weights serve every
 * batch (the draws depend on the seed alone, not on the batch size). */
static cs_status forward_pass(cs_graph *g, const cs_dataset *ts, const cs_laplace *la, const cs_norm *norm,
                              int64_t batch, bool map, bool nn, int samples, uint64_t seed, metric_sums *sums,
                              cs_err *err)
{
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ts, norm, CS_LOSS_CE, batch, CS_OBJ_WHOLE_BATCH, err);
    if (st)
        return st;
    int64_t C = obj.classes, D = la->D, n = ts->n;
    double *probs = NULL, *theta = NULL, *z = NULL, *work = NULL;
    int64_t wn = cs_laplace_transform_work(la);
    if ((st = cs_curv_zalloc(&probs, (size_t)(n * C), err, "the test set's predictive probabilities")) ||
        (st = cs_curv_zalloc(&theta, (size_t)(D > 2 * C ? D : 2 * C), err, "a weight sample")) ||
        (st = cs_curv_zalloc(&z, (size_t)(D > 2 * C ? D : 2 * C), err, "a weight sample's normals")) ||
        (st = cs_curv_zalloc(&work, (size_t)(wn > 1 ? wn : 1), err, "the posterior sampler's work")))
        goto done;
    if (map) {
        if ((st = add_probs(&obj, ts, norm, 1.0, probs, z, err)))
            goto done;
        for (int64_t i = 0; i < n; i++)
            add_sample(&sums[CS_LA_MAP], probs + i * C, C, cs_dataset_label(ts, i));
        memset(probs, 0, sizeof(double) * (size_t)(n * C));
    }
    if (nn) {
        cs_rng rng;
        cs_rng_seed(&rng, seed + 1); /* a stream apart from the linearised Monte Carlo's */
        for (int s = 0; s < samples && !st; s++) {
            if (!(st = cs_laplace_sample(la, &rng, theta, z, work, err))) {
                write_posterior(g, la, theta);
                st = add_probs(&obj, ts, norm, 1.0 / samples, probs, z, err);
            }
        }
        write_posterior(g, la, la->theta);
        for (int64_t i = 0; i < n && !st; i++)
            add_sample(&sums[CS_LA_NN_MC], probs + i * C, C, cs_dataset_label(ts, i));
    }
done:
    free(probs), free(theta), free(z), free(work);
    cs_objective_free(&obj);
    return st;
}

cs_status cs_laplace_predict(cs_graph *g, const cs_dataset *ts, const cs_laplace *la, const cs_norm *norm,
                             int64_t batch, unsigned mask, int mc_samples, uint64_t seed,
                             cs_la_metrics out[CS_LA_METHOD_COUNT], cs_err *err)
{
    if (!ts->int_labels)
        return cs_fail(err, CS_ERR_USAGE, "the test set needs integer class labels");
    if (mc_samples < 1 && (mask & (1u << CS_LA_GLM_MC | 1u << CS_LA_NN_MC)))
        return cs_fail(err, CS_ERR_USAGE, "the Monte Carlo predictives need at least one sample");
    metric_sums sums[CS_LA_METHOD_COUNT];
    memset(sums, 0, sizeof sums);
    bool glm = mask & (1u << CS_LA_GLM_PROBIT | 1u << CS_LA_GLM_MC);
    cs_status st = CS_OK;
    if (glm)
        st = glm_pass(g, ts, la, norm, batch, mc_samples, seed, sums, err);
    if (!st && (mask & (1u << CS_LA_NN_MC | (glm ? 0 : 1u << CS_LA_MAP))))
        st = forward_pass(g, ts, la, norm, batch, !glm && (mask & 1u << CS_LA_MAP), mask & 1u << CS_LA_NN_MC,
                          mc_samples, seed, sums, err);
    for (int m = 0; m < CS_LA_METHOD_COUNT && !st; m++)
        if (mask & 1u << m)
            out[m] = finish(&sums[m], (double)ts->n);
    return st;
}
