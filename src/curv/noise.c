/* Gradient noise scale accumulators and estimators (curv/noise.h). */
#include "curv/noise.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curv/alloc.h"

struct cs_noise_acc {
    int n_layers;
    int K;
    int64_t N;
    int64_t *W;        /* [n_layers]: numel, 0 for a layer without rows */
    double **sum;      /* [n_layers][K * W]: sum of g_n over group k */
    double *sq;        /* [n_layers * K]: sum of |g_n|^2 over group k */
    int64_t *count;    /* [n_layers * K]: samples seen in group k */
};

void cs_noise_acc_free(cs_noise_acc *a)
{
    if (!a)
        return;
    for (int l = 0; a->sum && l < a->n_layers; l++)
        free(a->sum[l]);
    free(a->sum), free(a->sq), free(a->count), free(a->W);
    free(a);
}

cs_status cs_noise_acc_new(const cs_graph *g, const bool *has_rows, int64_t n_samples, int groups,
                           cs_noise_acc **out, cs_err *err)
{
    *out = NULL;
    cs_noise_acc *a;
    cs_status st = cs_curv_alloc((void **)&a, 1, sizeof *a, CS_ALLOC_ZERO, err, "the noise scale's state");
    if (st)
        return st;
    a->n_layers = g->n_layers;
    a->N = n_samples;
    /* at least 2 samples per group, so that each group's tr(Sigma) exists */
    int64_t K = groups < 1 ? 1 : groups;
    if (K > n_samples / 2)
        K = n_samples / 2 > 1 ? n_samples / 2 : 1;
    a->K = (int)K;
    int L = g->n_layers > 0 ? g->n_layers : 1;
    if ((st = cs_curv_alloc((void **)&a->W, (size_t)L, sizeof *a->W, CS_ALLOC_ZERO, err, "the noise scale's layers")) ||
        (st = cs_curv_alloc((void **)&a->sum, (size_t)L, sizeof *a->sum, CS_ALLOC_ZERO, err,
                            "the noise scale's layers")) ||
        (st = cs_curv_zalloc(&a->sq, (size_t)(L * K), err, "the noise scale's squared norms")) ||
        (st = cs_curv_alloc((void **)&a->count, (size_t)(L * K), sizeof *a->count, CS_ALLOC_ZERO, err,
                            "the noise scale's counts"))) {
        cs_noise_acc_free(a);
        return st;
    }
    for (int l = 0; l < g->n_layers; l++) {
        if (!has_rows[l])
            continue;
        a->W[l] = g->layers[l].numel;
        if ((st = cs_curv_zalloc(&a->sum[l], (size_t)(K * a->W[l]), err,
                                 "the noise scale's group gradients of layer '%s'", g->layers[l].name))) {
            cs_noise_acc_free(a);
            return st;
        }
    }
    *out = a;
    return CS_OK;
}

/* The group of sample n: K contiguous blocks of sizes within one. */
static int group_of(const cs_noise_acc *a, int64_t n)
{
    int64_t k = n * a->K / a->N;
    return (int)(k < a->K ? k : a->K - 1);
}

void cs_noise_acc_add(cs_noise_acc *a, int layer, int64_t start, const double *rows, int64_t B)
{
    int64_t W = a->W[layer];
    if (W == 0)
        return;
    for (int64_t b = 0; b < B; b++) {
        int k = group_of(a, start + b);
        const double *r = rows + b * W;
        double *s = a->sum[layer] + (int64_t)k * W, q = 0;
        for (int64_t i = 0; i < W; i++) {
            s[i] += r[i];
            q += r[i] * r[i];
        }
        a->sq[layer * a->K + k] += q;
        a->count[layer * a->K + k]++;
    }
}

/* The unbiased pair (|G|^2, tr(Sigma)) of n samples whose gradients sum
 * to sum and whose squared norms sum to q: curv/noise.h's formulas. */
static void estimate(double sum_sq, double q, int64_t n, double *G2, double *S)
{
    double nn = (double)n, mean_sq = sum_sq / (nn * nn); /* |gbar|^2 */
    *S = n > 1 ? fmax(0.0, (q - nn * mean_sq) / (nn - 1)) : NAN;
    *G2 = n > 1 ? mean_sq - *S / nn : NAN;
}

static double ratio(double S, double G2)
{
    return G2 > 0 ? S / G2 : NAN;
}

/* Delta-method standard error of S / G from K group values (curv/noise.h). */
static double ratio_se(const double *Sk, const double *Gk, int K, double S, double G)
{
    if (K < 2 || !(G > 0))
        return NAN;
    double ms = 0, mg = 0;
    for (int k = 0; k < K; k++)
        ms += Sk[k], mg += Gk[k];
    ms /= K, mg /= K;
    double vs = 0, vg = 0, c = 0;
    for (int k = 0; k < K; k++) {
        vs += (Sk[k] - ms) * (Sk[k] - ms);
        vg += (Gk[k] - mg) * (Gk[k] - mg);
        c += (Sk[k] - ms) * (Gk[k] - mg);
    }
    /* sample (co)variances over groups, / K for the full-data estimates */
    double d = (double)(K - 1) * K;
    vs /= d, vg /= d, c /= d;
    double B = S / G, rel = (S > 0 ? vs / (S * S) - 2 * c / (S * G) : 0) + vg / (G * G);
    return fabs(B) * sqrt(fmax(0.0, rel));
}

cs_status cs_noise_acc_results(const cs_noise_acc *a, cs_noise_result **res, int *n, cs_err *err)
{
    *res = NULL, *n = 0;
    int K = a->K, L = a->n_layers;
    cs_noise_result *r;
    double *work;
    cs_status st = cs_curv_alloc((void **)&r, (size_t)(L + 1), sizeof *r, CS_ALLOC_ZERO, err,
                                 "the noise scale results");
    if (st)
        return st;
    /* per group: S_k, G_k of the layer, then the network's sums */
    if ((st = cs_curv_zalloc(&work, (size_t)(4 * K), err, "the noise scale's groups"))) {
        free(r);
        return st;
    }
    double *Sk = work, *Gk = work + K, *netS = work + 2 * K, *netG = work + 3 * K;
    double net_S = 0, net_G = 0;
    bool any = false;
    for (int l = 0; l <= L; l++) {
        cs_noise_result *x = &r[l];
        x->layer = l < L ? l : -1;
        x->n_samples = a->N;
        x->groups = K;
        x->grad_sq_norm = x->trace_cov = x->b_simple = x->b_simple_se = NAN;
        if (l == L) {
            if ((x->available = any)) {
                x->grad_sq_norm = net_G, x->trace_cov = net_S;
                x->b_simple = ratio(net_S, net_G);
                x->b_simple_se = ratio_se(netS, netG, K, net_S, net_G);
            }
            break;
        }
        int64_t W = a->W[l];
        if (W == 0)
            continue;
        x->available = any = true;
        double q = 0, ss = 0;
        const double *s = a->sum[l];
        for (int k = 0; k < K; k++) {
            double sk = 0;
            for (int64_t i = 0; i < W; i++)
                sk += s[k * W + i] * s[k * W + i];
            estimate(sk, a->sq[l * K + k], a->count[l * K + k], &Gk[k], &Sk[k]);
            netS[k] += Sk[k], netG[k] += Gk[k];
            q += a->sq[l * K + k];
        }
        for (int64_t i = 0; i < W; i++) {
            double t = 0;
            for (int k = 0; k < K; k++)
                t += s[k * W + i];
            ss += t * t;
        }
        estimate(ss, q, a->N, &x->grad_sq_norm, &x->trace_cov);
        x->b_simple = ratio(x->trace_cov, x->grad_sq_norm);
        x->b_simple_se = ratio_se(Sk, Gk, K, x->trace_cov, x->grad_sq_norm);
        net_S += x->trace_cov, net_G += x->grad_sq_norm;
    }
    free(work);
    *res = r, *n = L + 1;
    return CS_OK;
}
