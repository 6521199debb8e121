/* Whole-network matrix-free spectra against exact eigendecompositions:
 * on the tiny float64 models, Lanczos top-5 / bottom-5 against the PyTorch
 * whole-network matrices' eigenvalues (rtol 1e-6 of max |lambda|), the SLQ
 * density integrating to 1 with moments matching tr(A)/n and tr(A^2)/n, and
 * Hutchinson's trace within 4 standard errors over several seeds; on the
 * bundled float32 MLP and CNN, the top-5 Hessian and GGN eigenvalues against
 * PyTorch's (tests/fixtures/spectrum_*.txt, rtol 1e-4). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../tap.h"
#include "../test_util.h"
#include "curv/spectrum.h"
#include "case.h"
#include "fixture.h"
#include "interp/model.h"
#include "onnx/loader.h"
#include "spectral/dense.h"
#include "tensor/blas.h"

static void check_tiny(const char *model, cs_loss_kind loss)
{
    const char *ln = cs_loss_name(loss);
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load(model, model, 0, &g, &ds))
        return;
    char rel[160], path[512];
    snprintf(rel, sizeof rel, "tests/fixtures/curv_%s_%s.txt", model, ln);
    fx_file fx;
    if (!ok(fx_load(&fx, test_src_path(path, sizeof path, rel)) == 0, "%s: fixture", model)) {
        cs_dataset_free(&ds);
        cs_graph_free(g);
        return;
    }
    int64_t P = g->n_param_scalars;
    cs_spectrum_opts o;
    cs_spectrum_opts_init(&o);
    o.curvatures = 1u << CS_CURV_HESSIAN | 1u << CS_CURV_GGN | 1u << CS_CURV_FISHER_EMP;
    o.steps = (int)P;  /* a full Krylov space: Ritz values are the eigenvalues */
    o.probes = 300;
    o.loss = loss;
    o.batch = 5;
    o.seed = 11;
    cs_net_spectrum *sp = NULL;
    int n = 0;
    cs_err err = {0};
    if (ok(cs_spectrum_compute(g, &ds, &o, &sp, &n, &err) == CS_OK && n == 3, "%s/%s: spectra (%s)", model, ln,
           err.msg)) {
        for (int i = 0; i < n; i++) {
            const char *cn = cs_curv_name(sp[i].curv);
            char name[96];
            snprintf(name, sizeof name, "eig/%s/full/net", cn);
            const fx_record *ev = fx_get(&fx, name);
            snprintf(name, sizeof name, "block/%s/net", cn);
            const fx_record *M = fx_get(&fx, name);
            const cs_lanczos_result *L = &sp[i].lanczos[0];
            if (!ev || !M || L->steps < 10) {
                ok(0, "%s/%s %s: fixture records and Lanczos steps (%d)", model, ln, cn, L->steps);
                continue;
            }
            /* Lanczos from one start vector sees each DISTINCT eigenvalue
             * once (a repeated one, like the zero eigenvalue of the
             * rank-deficient GGN and Fisher, appears as one Ritz value), and
             * stops when the Krylov space is exhausted: compare with the
             * distinct exact eigenvalues (merged within 1e-9 of the scale). */
            double scale = fmax(fabs(ev->v[0]), fabs(ev->v[ev->cols - 1])), top = 0, bot = 0;
            double *distinct = malloc(sizeof(double) * (size_t)ev->cols);
            int nd = 0;
            for (long k = 0; k < ev->cols; k++)
                if (nd == 0 || distinct[nd - 1] - ev->v[k] > 1e-9 * scale)
                    distinct[nd++] = ev->v[k];
            /* Ritz values merged the same way: after the Krylov space is
             * exhausted, rounding noise can add a second copy of an
             * eigenvalue (here the zero one), which is not a new value. */
            double *rd = malloc(sizeof(double) * (size_t)L->steps);
            int nr = 0;
            for (int k = 0; k < L->steps; k++)
                if (nr == 0 || rd[nr - 1] - L->ritz[k] > 1e-9 * scale)
                    rd[nr++] = L->ritz[k];
            int kk = nd < 5 ? nd : 5;
            for (int k = 0; k < kk && k < nr; k++) {
                top = fmax(top, fabs(rd[k] - distinct[k]));
                bot = fmax(bot, fabs(rd[nr - 1 - k] - distinct[nd - 1 - k]));
            }
            free(distinct);
            free(rd);
            ok(L->steps >= 2 * kk && top <= 1e-6 * scale,
               "%s/%s %s: Lanczos top-%d match the exact eigenvalues (max err %.2g of %.3g)", model, ln, cn, kk, top,
               scale);
            ok(L->steps >= 2 * kk && bot <= 1e-6 * scale,
               "%s/%s %s: Lanczos bottom-%d match the distinct exact eigenvalues (max err %.2g, %d steps, %d distinct)",
               model, ln, cn, kk, bot, L->steps, nd);
            ok(L->residual[0] <= 1e-6 * scale && sp[i].converged[0][0],
               "%s/%s %s: the top Ritz value is converged (residual %.2g)", model, ln, cn, L->residual[0]);

            double tr = 0, fro2 = 0;
            for (long a = 0; a < M->rows; a++) {
                tr += M->v[a * M->rows + a];
                for (long b = 0; b < M->rows; b++)
                    fro2 += M->v[a * M->rows + b] * M->v[a * M->rows + b];
            }
            double width = sp[i].edges[1] - sp[i].edges[0], mass = 0;
            for (int b = 0; b < sp[i].bins; b++)
                mass += sp[i].density[b] * width;
            ok(fabs(mass - 1) < 1e-6, "%s/%s %s: SLQ density integrates to 1 (%.9f)", model, ln, cn, mass);
            /* Moments: per-probe estimates of tr(A)/n and tr(A^2)/n; their
             * spread gives the standard errors. */
            int K = sp[i].slq.probes;
            double m1 = 0, s1 = 0, m2 = 0, s2 = 0;
            for (int p = 0; p < K; p++) {
                double a, b, c;
                cs_slq_probe_moments(&sp[i].slq, p, &a, &b, &c);
                m1 += a / K, s1 += a * a / K, m2 += b / K, s2 += b * b / K;
            }
            double se1 = sqrt(fmax(0, s1 - m1 * m1) / (K - 1)), se2 = sqrt(fmax(0, s2 - m2 * m2) / (K - 1));
            ok(fabs(m1 - tr / P) <= 4 * se1, "%s/%s %s: SLQ mean %.6g within 4 standard errors (%.2g) of tr/n %.6g",
               model, ln, cn, m1, se1, tr / P);
            ok(fabs(m2 - fro2 / P) <= 4 * se2,
               "%s/%s %s: SLQ second moment %.6g within 4 standard errors (%.2g) of tr(A^2)/n %.6g", model, ln, cn,
               m2, se2, fro2 / P);
            /* Effective rank from the quadrature against the exact one
             * (spectrum-level statistic of 300 probes: 10% tolerance). */
            double T = 0, Sx = 0, amax = fabs(ev->v[0]);
            for (long k = 0; k < ev->cols; k++)
                if (ev->v[k] > (double)ev->cols * 2.220446049250313e-16 * amax) {
                    T += ev->v[k];
                    Sx += ev->v[k] * log(ev->v[k]);
                }
            double erank = exp(log(T) - Sx / T);
            ok(fabs(sp[i].slq_effective_rank - erank) <= 0.1 * erank,
               "%s/%s %s: SLQ effective rank %.4g within 10%% of the exact %.4g", model, ln, cn,
               sp[i].slq_effective_rank, erank);
            ok(fabs(sp[i].hutch_trace - tr) <= 4 * sp[i].hutch_stderr,
               "%s/%s %s: Hutchinson trace %.6g within 4 standard errors (%.2g) of %.6g", model, ln, cn,
               sp[i].hutch_trace, sp[i].hutch_stderr, tr);
        }
        cs_spectrum_free(sp, n);
    }
    fx_free(&fx);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* Hutchinson across seeds: the estimate stays within 4 standard errors. */
static void check_hutchinson_seeds(void)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load("tiny_mlp64", "tiny_mlp64", 0, &g, &ds))
        return;
    char path[512];
    fx_file fx;
    if (fx_load(&fx, test_src_path(path, sizeof path, "tests/fixtures/curv_tiny_mlp64_ce.txt")) == 0) {
        const fx_record *M = fx_get(&fx, "block/hessian/net");
        double tr = 0;
        for (long a = 0; M && a < M->rows; a++)
            tr += M->v[a * M->rows + a];
        int within = 0, seeds = 8;
        for (int s = 0; s < seeds; s++) {
            cs_spectrum_opts o;
            cs_spectrum_opts_init(&o);
            o.curvatures = 1u << CS_CURV_HESSIAN;
            o.steps = 4;
            o.probes = 50;
            o.seed = 100 + (uint64_t)s;
            cs_net_spectrum *sp = NULL;
            int n = 0;
            cs_err err = {0};
            if (cs_spectrum_compute(g, &ds, &o, &sp, &n, &err) == CS_OK) {
                within += fabs(sp[0].hutch_trace - tr) <= 4 * sp[0].hutch_stderr;
                cs_spectrum_free(sp, n);
            }
        }
        ok(within == seeds, "Hutchinson trace within 4 standard errors for %d of %d seeds", within, seeds);
        fx_free(&fx);
    }
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* Top-5 eigenvalues of the bundled float32 models against PyTorch float64. */
static void check_bundled(const char *model, const char *fmnist)
{
    char rel[160], path[512], fx_path[512], images[600], labels[600];
    snprintf(rel, sizeof rel, "tests/fixtures/spectrum_%s.txt", model);
    test_src_path(fx_path, sizeof fx_path, rel);
    FILE *f = fopen(fx_path, "r");
    if (!f) {
        skip("%s: no fixture %s", model, rel);
        return;
    }
    double want[2][5] = {{0}};
    int got_lines = 0, samples = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        int which = strncmp(line, "hessian_top5 ", 13) == 0 ? 0 : strncmp(line, "ggn_top5 ", 9) == 0 ? 1 : -1;
        if (strncmp(line, "samples ", 8) == 0)
            samples = atoi(line + 8);
        if (which < 0)
            continue;
        char *s = strchr(line, ' ');
        for (int k = 0; k < 5; k++)
            want[which][k] = strtod(s, &s);
        got_lines++;
    }
    fclose(f);
    snprintf(rel, sizeof rel, "tests/models/%s.onnx", model);
    test_src_path(path, sizeof path, rel);
    snprintf(images, sizeof images, "idx:%s/train-images-idx3-ubyte.gz", fmnist);
    snprintf(labels, sizeof labels, "idx:%s/train-labels-idx1-ubyte.gz", fmnist);
    cs_err err = {0};
    cs_graph *g = NULL;
    cs_dataset ds;
    if (!ok(got_lines == 2 && samples > 0, "%s: fixture has both top-5 lines", model) ||
        !ok(cs_model_load_file(path, &g, &err) == CS_OK, "%s: load (%s)", model, err.msg))
        return;
    if (!ok(cs_dataset_load(&ds, images, labels, samples, &err) == CS_OK, "%s: data (%s)", model, err.msg)) {
        cs_graph_free(g);
        return;
    }
    cs_norm norm;
    cs_norm_init(&norm);
    if (cs_norm_parse_scale(&norm, "1/255", &err) || cs_norm_parse_mean(&norm, "0.2860", &err) ||
        cs_norm_parse_std(&norm, "0.3530", &err))
        ok(0, "normalisation");
    cs_spectrum_opts o;
    cs_spectrum_opts_init(&o);
    o.curvatures = 1u << CS_CURV_HESSIAN | 1u << CS_CURV_GGN;
    o.steps = 40;
    o.probes = 0;
    o.norm = &norm;
    o.batch = 256;
    o.seed = 1;
    cs_net_spectrum *sp = NULL;
    int n = 0;
    if (ok(cs_spectrum_compute(g, &ds, &o, &sp, &n, &err) == CS_OK, "%s: spectra (%s)", model, err.msg)) {
        for (int i = 0; i < n; i++) {
            int w = sp[i].curv == CS_CURV_HESSIAN ? 0 : 1;
            double worst = 0;
            for (int k = 0; k < 5; k++)
                worst = fmax(worst, fabs(sp[i].lanczos[0].ritz[k] - want[w][k]) / fabs(want[w][0]));
            ok(worst <= 1e-4, "%s: top-5 %s eigenvalues match PyTorch (max rel err %.2g; %.6g vs %.6g)", model,
               cs_curv_name(sp[i].curv), worst, sp[i].lanczos[0].ritz[0], want[w][0]);
        }
        cs_spectrum_free(sp, n);
    }
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    cs_blas_set_threads(1); /* as the command line does: small GEMMs */
    static const char *const models[] = {"tiny_mlp64", "tiny_cnn64", "tiny_attn64"};
    for (int m = 0; m < 3; m++) {
        check_tiny(models[m], CS_LOSS_CE);
        check_tiny(models[m], CS_LOSS_MSE);
    }
    check_hutchinson_seeds();
    const char *fmnist = test_env("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist");
    char probe[600];
    struct stat sb;
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", fmnist);
    if (stat(probe, &sb) == 0) {
        check_bundled("mlp", fmnist);
        check_bundled("cnn", fmnist);
    } else {
        skip("Fashion-MNIST not found at %s: bundled models' top eigenvalues", fmnist);
    }
    return tap_done();
}
