/* The ConvTranspose layer kind through the curvature engine, against a
 * float64 dense reference written here from the definitions alone (no
 * interpreter, no layout code): tests/models/tiny_convt64.onnx is
 *   u = ConvTranspose(x; W [4, 2, 3, 2], B [4]; group 2, strides 2x1,
 *       pads (1, 0, 0, 1), output_padding (1, 0), dilations 1x2)  [N, 4, 5, 4]
 *   z = fc.W mean_t tanh(u[:, t]) + fc.b                         [N, 3]
 * with the cross-entropy loss.  Checked for the GGN of layer "up":
 *   - the full block (1/N) sum_n J_n^T Lambda_n J_n, J_n the Jacobian of z
 *     by the layer's parameters, Lambda_n = diag(p) - p p^T;
 *   - the diagonal, and the unit-wise blocks (units = output channels per
 *     group: W[c, j, :] of group c / Cg with B[g Mg + j]);
 *   - K-FAC's factors by doc/design.md §2.4's definition for the
 *     equivalent convolution: A_g = (1/(N T)) sum_{n,t} abar abar^T with
 *     abar = (X[n, c, x] for the (c, tap) whose y = x s - p + tap d, or 0;
 *     1), G_g = (1/N) sum_{n,t} J_t^T Lambda J_t over the group's output
 *     channels (J_t = dz / du[:, t]), and the K-FAC matrix G (x) A placed
 *     by (group, unit, feature) of each stored weight. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "../test_model.h"
#include "curv/engine.h"
#include "data/dataset.h"
#include "dense_ref.h"
#include "interp/layer_kind.h"

enum {
    N = 6,                    /* samples; batches of 4 and 2 */
    C = 4, GR = 2, CG = 2,    /* input channels, groups, per group */
    MG = 2, M = 4,            /* output channels per group, in all */
    KH = 3, KW = 2, K = KH * KW,
    XH = 2, XW = 3, TX = XH * XW,
    YH = 5, YW = 4, T = YH * YW,
    CLS = 3,
    NW = C * MG * K, NP = NW + M, /* the layer's parameters */
    FAN = CG * K, DA = FAN + 1,
};
static const int SH = 2, SW = 1, PH = 1, PW = 0, DH = 1, DW = 2;

/* The patch of the equivalent convolution: feature (c, kh, kw) of group g at
 * output position (yh, yw) is x[g CG + c] at (xh, xw) with
 * yh = xh SH - PH + kh DH and yw = xw SW - PW + kw DW, or 0. */
static double patch(const double *x, int g, int f, int t)
{
    int c = f / K, kh = f % K / KW, kw = f % KW, yh = t / YW, yw = t % YW;
    int nh = yh + PH - kh * DH, nw = yw + PW - kw * DW;
    if (nh < 0 || nw < 0 || nh % SH || nw % SW || nh / SH >= XH || nw / SW >= XW)
        return 0;
    return x[(g * CG + c) * TX + nh / SH * XW + nw / SW];
}

/* (group, unit, feature) of the layer's parameter p by the convention. */
static void place(int p, int *g, int *j, int *f)
{
    if (p < NW) {
        int c = p / (MG * K);
        *g = c / CG, *j = p / K % MG, *f = c % CG * K + p % K;
    } else {
        *g = (p - NW) / MG, *j = (p - NW) % MG, *f = FAN;
    }
}

typedef struct reference {
    double ggn[NP * NP], A[GR][DA][DA], G[GR][MG][MG];
} reference;

static void make_reference(const cs_graph *g, const cs_dataset *ds, reference *r)
{
    const double *W = NULL, *B = NULL, *fw = NULL, *fb = NULL;
    for (int v = 0; v < g->n_values; v++) {
        const char *nm = g->values[v].name;
        const double *d = g->values[v].init.data;
        if (strcmp(nm, "up.weight") == 0)
            W = d;
        else if (strcmp(nm, "up.bias") == 0)
            B = d;
        else if (strcmp(nm, "fc.weight") == 0)
            fw = d;
        else if (strcmp(nm, "fc.bias") == 0)
            fb = d;
    }
    memset(r, 0, sizeof *r);
    if (!W || !B || !fw || !fb)
        return;
    for (int n = 0; n < N; n++) {
        const double *x = (const double *)ds->x.data + n * C * TX;
        double u[M][T], s[M][T], z[CLS], pr[CLS], lam[CLS][CLS], J[CLS][NP], Jt[T][CLS][M];
        for (int m = 0; m < M; m++)
            for (int t = 0; t < T; t++) {
                int gg = m / MG, j = m % MG;
                u[m][t] = B[m];
                for (int f = 0; f < FAN; f++) /* W[gg CG + c, j, tap] */
                    u[m][t] += W[((gg * CG + f / K) * MG + j) * K + f % K] * patch(x, gg, f, t);
                s[m][t] = 1 - tanh(u[m][t]) * tanh(u[m][t]); /* tanh' */
            }
        double mx = -INFINITY, sum = 0;
        for (int a = 0; a < CLS; a++) {
            z[a] = fb[a];
            for (int m = 0; m < M; m++) {
                double mean = 0;
                for (int t = 0; t < T; t++)
                    mean += tanh(u[m][t]) / T;
                z[a] += fw[a * M + m] * mean;
            }
            mx = fmax(mx, z[a]);
        }
        for (int a = 0; a < CLS; a++)
            sum += pr[a] = exp(z[a] - mx);
        for (int a = 0; a < CLS; a++)
            pr[a] /= sum;
        for (int a = 0; a < CLS; a++)
            for (int b = 0; b < CLS; b++)
                lam[a][b] = (a == b) * pr[a] - pr[a] * pr[b];
        /* dz_a / du[m, t] = fc.W[a, m] tanh'(u[m, t]) / T */
        for (int t = 0; t < T; t++)
            for (int a = 0; a < CLS; a++)
                for (int m = 0; m < M; m++)
                    Jt[t][a][m] = fw[a * M + m] * s[m][t] / T;
        for (int a = 0; a < CLS; a++)
            for (int p = 0; p < NP; p++) {
                int gg, j, f;
                place(p, &gg, &j, &f);
                J[a][p] = 0;
                for (int t = 0; t < T; t++)
                    J[a][p] += Jt[t][a][gg * MG + j] * (f < FAN ? patch(x, gg, f, t) : 1.0);
            }
        for (int p = 0; p < NP; p++)
            for (int q = 0; q < NP; q++)
                for (int a = 0; a < CLS; a++)
                    for (int b = 0; b < CLS; b++)
                        r->ggn[p * NP + q] += J[a][p] * lam[a][b] * J[b][q] / N;
        for (int gg = 0; gg < GR; gg++)
            for (int t = 0; t < T; t++) {
                for (int f = 0; f < DA; f++)
                    for (int h = 0; h < DA; h++)
                        r->A[gg][f][h] += (f < FAN ? patch(x, gg, f, t) : 1.0) *
                                          (h < FAN ? patch(x, gg, h, t) : 1.0) / (N * T);
                for (int j = 0; j < MG; j++)
                    for (int i = 0; i < MG; i++)
                        for (int a = 0; a < CLS; a++)
                            for (int b = 0; b < CLS; b++)
                                r->G[gg][j][i] += Jt[t][a][gg * MG + j] * lam[a][b] * Jt[t][b][gg * MG + i] / N;
            }
    }
}

static void make_dataset(cs_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    cs_tensor_set_shape(&ds->x, CS_DT_DOUBLE, 4, (int64_t[]){N, C, XH, XW});
    cs_tensor_set_shape(&ds->y, CS_DT_INT64, 1, (int64_t[]){N});
    if (cs_tensor_alloc(&ds->x, NULL) || cs_tensor_alloc(&ds->y, NULL))
        abort();
    uint64_t s = 2024;
    for (int64_t i = 0; i < N * C * TX; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ((double *)ds->x.data)[i] = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
    }
    for (int64_t i = 0; i < N; i++)
        ((int64_t *)ds->y.data)[i] = i % CLS;
    ds->n = N;
    ds->has_labels = ds->int_labels = true;
}

/* The upper triangles the factors may hold: compare those only. */
static double factor_err(const double *got, const double *ref, int d, int groups)
{
    double e = 0, s = 0;
    for (int g = 0; g < groups; g++)
        for (int i = 0; i < d; i++)
            for (int j = i; j < d; j++) {
                e = fmax(e, fabs(got[(g * d + i) * d + j] - ref[(g * d + i) * d + j]));
                s = fmax(s, fabs(ref[(g * d + i) * d + j]));
            }
    return e / s;
}

int main(void)
{
    cs_graph *g = test_load_model("tiny_convt64");
    if (!g)
        return tap_done();
    cs_dataset ds;
    make_dataset(&ds);
    int l = 0;
    ok(g->n_layers == 2 && strcmp(g->layers[0].kind->name, "conv_transpose") == 0 &&
           g->layers[0].numel == NP,
       "tiny_convt64: layer 0 is a conv_transpose layer of %d parameters", (int)NP);
    static reference ref;
    make_reference(g, &ds, &ref);

    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_GGN;
    o.reprs = 1u << CS_REPR_FULL | 1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_UNIT;
    o.loss = CS_LOSS_CE;
    o.batch = 4;
    o.keep_matrices = true;
    cs_curv_report rep;
    cs_err err = {0};
    if (!ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "tiny_convt64: compute (%s)", err.msg)) {
        cs_dataset_free(&ds);
        cs_graph_free(g);
        return tap_done();
    }
    const cs_curv_result *full = cs_curv_report_find(&rep, CS_CURV_GGN, CS_REPR_FULL, l);
    const cs_curv_result *dg = cs_curv_report_find(&rep, CS_CURV_GGN, CS_REPR_DIAG, l);
    /* the unit blocks themselves come with the statistics (fine-tuning's) */
    cs_curv_opts os = o;
    os.reprs = 1u << CS_REPR_UNIT;
    os.stats_only = true;
    cs_curv_report srep;
    bool sran = cs_curvature_compute(g, &ds, &os, &srep, &err) == CS_OK;
    ok(sran, "tiny_convt64: unit-wise statistics (%s)", err.msg);
    const cs_curv_result *un = sran ? cs_curv_report_find(&srep, CS_CURV_GGN, CS_REPR_UNIT, l) : NULL;
    const cs_curv_result *ue = cs_curv_report_find(&rep, CS_CURV_GGN, CS_REPR_UNIT, l);
    ok(ue && ue->n_eig == NP, "unit-wise eigenvalues of the layer reported (%lld)", ue ? (long long)ue->n_eig : -1LL);
    const cs_curv_result *kf = cs_curv_report_find(&rep, CS_CURV_GGN, CS_REPR_KFAC, l);

    if (ok(full && full->matrix && full->dim == NP, "ggn full block of the ConvTranspose layer present"))
        ok(rel_err(full->matrix, ref.ggn, NP * NP) < 1e-12,
           "ggn full block equals the dense reference (rel err %.2g)", rel_err(full->matrix, ref.ggn, NP * NP));

    if (ok(dg && dg->matrix && dg->dim == NP, "ggn diagonal present")) {
        double d[NP];
        for (int p = 0; p < NP; p++)
            d[p] = ref.ggn[p * NP + p];
        ok(rel_err(dg->matrix, d, NP) < 1e-12, "ggn diagonal equals the reference's (rel err %.2g)",
           rel_err(dg->matrix, d, NP));
    }

    if (ok(un && un->unit_blocks && un->n_units == GR * MG && un->unit_d == DA,
           "unit-wise (statistics): %d units of %d slots", (int)(GR * MG), (int)DA)) {
        double e = 0;
        bool placed = true;
        for (int u = 0; u < GR * MG; u++)
            for (int a = 0; a < DA; a++) {
                int64_t p = un->unit_index[u * DA + a];
                int gg, j, f;
                place((int)p, &gg, &j, &f);
                placed = placed && p >= 0 && p < NP && gg * MG + j == u;
                for (int b = 0; b < DA && placed; b++) {
                    int64_t q = un->unit_index[u * DA + b];
                    e = fmax(e, fabs(un->unit_blocks[(u * DA + a) * DA + b] - ref.ggn[p * NP + q]));
                }
            }
        ok(placed, "unit-wise: unit g Mg + j holds W[c, j, :] of group g's input channels and B[g Mg + j]");
        double scale = 0;
        for (int i = 0; i < NP * NP; i++)
            scale = fmax(scale, fabs(ref.ggn[i]));
        ok(placed && e < 1e-12 * scale,
           "unit-wise blocks equal the reference's sub-blocks (max err %.2g)", e);
    }

    if (ok(kf && kf->matrix && kf->kfac_A && kf->kfac_G && kf->kfac_groups == GR && kf->kfac_dA == DA &&
               kf->kfac_dG == MG,
           "K-FAC: %d groups, A %d x %d, G %d x %d", (int)GR, (int)DA, (int)DA, (int)MG, (int)MG)) {
        double ea = factor_err(kf->kfac_A, &ref.A[0][0][0], DA, GR);
        double eg = factor_err(kf->kfac_G, &ref.G[0][0][0], MG, GR);
        ok(ea < 1e-12, "K-FAC A equals the equivalent convolution's patch second moment (rel err %.2g)", ea);
        ok(eg < 1e-12, "K-FAC G equals the output-gradient second moment over positions (rel err %.2g)", eg);
        bool same_index = true;
        static double kron[NP * NP];
        for (int p = 0; p < NP; p++) {
            int gp, jp, fp;
            place(p, &gp, &jp, &fp);
            same_index = same_index && kf->kfac_index[3 * p] == gp && kf->kfac_index[3 * p + 1] == jp &&
                         kf->kfac_index[3 * p + 2] == fp;
            for (int q = 0; q < NP; q++) {
                int gq, jq, fq;
                place(q, &gq, &jq, &fq);
                kron[p * NP + q] = gp != gq ? 0 : ref.G[gp][jp][jq] * ref.A[gp][fp][fq];
            }
        }
        ok(same_index, "K-FAC index: W[c, j, tap] is (c / Cg, j, (c mod Cg) K + tap), B[m] (m / Mg, m mod Mg, fan_in)");
        ok(rel_err(kf->matrix, kron, NP * NP) < 1e-12, "K-FAC matrix equals G (x) A of the reference (rel err %.2g)",
           rel_err(kf->matrix, kron, NP * NP));
    }
    cs_curv_report_free(&rep);
    if (sran)
        cs_curv_report_free(&srep);
    cs_dataset_free(&ds);
    cs_graph_free(g);
    return tap_done();
}
