/* Hessian-aware quantization (src/quant): the rounding's exact values,
 * the Pareto allocation against brute force, and the per-layer Hutchinson
 * traces against the exact traces of PyTorch's float64 Hessian blocks
 * (tests/fixtures/curv_tiny_mlp64_ce.txt): within 4 standard errors for 20
 * probes, and within 6% (and 4 standard errors) with 3000 (the standard error shrinks as 1/sqrt(probes)). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "../test_util.h"
#include "../curv/case.h"
#include "../curv/fixture.h"
#include "quant/quant.h"

static void test_rounding(void)
{
    /* max|x| = 3.5, 4 bits: qmax 7, s = 0.5; 0.25 and 0.75 are halves:
     * ties to even give 0 and 2 (1.0); -3.5 is -7 exactly */
    const double x[] = {3.5, 0.25, 0.75, -3.5, 1.1, -0.3};
    float s = cs_quant_scale(x, 6, 4);
    ok(s == 0.5f, "4-bit scale = max|x| / 7 (%g)", (double)s);
    int8_t q[6];
    double y[6];
    double e = cs_quant_round(x, 6, 4, s, q, y);
    const int8_t wq[] = {7, 0, 2, -7, 2, -1};
    const double wy[] = {3.5, 0, 1.0, -3.5, 1.0, -0.5};
    bool same = true;
    double we = 0;
    for (int i = 0; i < 6; i++) {
        same = same && q[i] == wq[i] && y[i] == wy[i];
        we += (wy[i] - x[i]) * (wy[i] - x[i]);
    }
    ok(same, "round half to even, clamped, values s * q");
    ok(fabs(e - we) < 1e-15, "squared error %g (expected %g)", e, we);
    /* 8 bits: s = 1/127 as a float; every code in range */
    const double z[] = {1.0, -1.0, 0.5};
    s = cs_quant_scale(z, 3, 8);
    cs_quant_round(z, 3, 8, s, q, y);
    ok(s == (float)(1.0 / 127) && q[0] == 127 && q[1] == -127 && q[2] == 64 && y[2] == (double)(float)(64.0 * s),
       "8-bit codes 127, -127, 64 (0.5 * 127 = 63.5 rounds to even)");
    const double zero[] = {0, 0};
    ok(cs_quant_scale(zero, 2, 8) == 1.0f, "an all-zero tensor has scale 1");
}

static void test_allocation(void)
{
    enum { L = 6, K = 3 };
    const int bits[K] = {8, 6, 4};
    int64_t size[L];
    double omega[L * K];
    uint64_t r = 12345;
    for (int t = 0; t < 20; t++) {
        for (int l = 0; l < L; l++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            size[l] = 1 + (int64_t)(r >> 40) % 50;
            double base = (double)(r >> 20 & 0xfffff) / 1048576.0;
            for (int k = 0; k < K; k++)
                omega[l * K + k] = base * pow(4.0, k) * (1 + 0.1 * k);
        }
        int64_t total = 0;
        for (int l = 0; l < L; l++)
            total += size[l];
        double budget = (double)total * (4.5 + 0.15 * t);
        /* brute force over the 3^6 assignments */
        double best = INFINITY;
        int combos = 1;
        for (int l = 0; l < L; l++)
            combos *= K;
        for (int c = 0; c < combos; c++) {
            double s = 0, o = 0;
            for (int l = 0, cc = c; l < L; l++, cc /= K) {
                s += (double)size[l] * bits[cc % K];
                o += omega[l * K + cc % K];
            }
            if (s <= budget && o < best)
                best = o;
        }
        int choice[L];
        double got = NAN;
        cs_err err = {0};
        cs_status st = cs_quant_allocate(L, size, bits, K, omega, budget, choice, &got, &err);
        double s = 0, o = 0;
        for (int l = 0; !st && l < L; l++) {
            s += (double)size[l] * bits[choice[l]];
            o += omega[l * K + choice[l]];
        }
        ok(st == CS_OK && s <= budget && fabs(o - got) < 1e-12 && fabs(got - best) <= 1e-12 * best,
           "instance %d: the allocation's omega %.9g equals brute force's %.9g within the budget", t, got, best);
    }
    int choice[2];
    double got;
    cs_err err = {0};
    const int64_t sz[2] = {10, 10};
    const double om[6] = {0};
    ok(cs_quant_allocate(2, sz, bits, K, om, 79.0, choice, &got, &err) == CS_ERR_USAGE && strstr(err.msg, "budget"),
       "a budget below the smallest widths is refused (%s)", err.msg);
}

static void test_traces(void)
{
    cs_graph *g;
    cs_dataset ds;
    fx_file fx;
    if (curv_case_load_fixture("tiny_mlp64", "tiny_mlp64", 0, "tiny_mlp64_ce", "fixture", &g, &ds, &fx))
        return;
    cs_objective obj;
    cs_err err = {0};
    if (!ok(cs_objective_init(&obj, g, &ds, NULL, CS_LOSS_CE, 5, CS_AD_HVP, &err) == CS_OK, "objective (%s)",
            err.msg))
        goto out;
    double tr[8], se[8], tr2[8], se2[8];
    int probes[2] = {20, 3000};
    cs_status st = cs_quant_traces(&obj, probes[0], 7, tr, se, &err);
    ok(st == CS_OK, "traces with 20 probes (%s)", err.msg);
    st = st ? st : cs_quant_traces(&obj, probes[1], 9, tr2, se2, &err);
    ok(st == CS_OK, "traces with 3000 probes (%s)", err.msg);
    for (int l = 0; !st && l < g->n_layers && l < 8; l++) {
        if (!cs_quant_layer(g, l))
            continue;
        char name[64];
        snprintf(name, sizeof name, "block/hessian/%d", l);
        const fx_record *H = fx_get(&fx, name);
        const cs_param *w = &g->params[g->layers[l].first_param];
        int64_t n = cs_tensor_numel(&g->values[w->value].init);
        if (!ok(H != NULL, "%s in the fixture", name))
            continue;
        /* the weight comes first in the layer's block */
        double exact = 0;
        for (int64_t i = 0; i < n; i++)
            exact += H->v[i * H->cols + i];
        ok(fabs(tr[l] - exact) <= 4 * se[l] && se[l] > 0,
           "layer %d: 20 probes give %.6g +- %.3g, exact %.6g (within 4 se)", l, tr[l], se[l], exact);
        ok(fabs(tr2[l] - exact) <= 0.06 * fabs(exact) && fabs(tr2[l] - exact) <= 4 * se2[l],
           "layer %d: 3000 probes give %.6g +- %.3g, exact %.6g (6%%, 4 se)", l, tr2[l], se2[l], exact);
    }
    ok(cs_quant_traces(&obj, 1, 7, tr, se, &err) == CS_ERR_USAGE, "one probe is refused (no standard error)");
    cs_objective_free(&obj);
out:
    fx_free(&fx);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    test_rounding();
    test_allocation();
    test_traces();
    return tap_done();
}
