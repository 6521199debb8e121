/* The objective's micro-batches and lanes (objective/objective.h): every
 * product (gradient, batch gradient, Hessian-, GGN- and empirical
 * Fisher-vector products) and the loss are the same with 1, 2 and 3 lanes,
 * bit for bit, and equal the whole-batch computation up to the rounding of
 * a different summation order.  The batch and the sample count are chosen
 * so that full, short and last micro-batches all run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "../test_model.h"
#include "../test_util.h"
#include "base/parallel.h"
#include "base/rng.h"
#include "objective/objective.h"
#include "onnx/loader.h"

#define N_SAMPLES 50
#define BATCH 15 /* 50 = 3 x 15 + 5; micro-batches of 8: 8 + 7 per batch, 5 at the end */

/* Normal inputs of the model's input type and shape, labels of its
 * classes. */
static void make_dataset(cs_dataset *ds, const cs_graph *g, uint64_t seed)
{
    const cs_tensor *out = &g->values[g->outputs[0]].decl;
    uint64_t classes = (uint64_t)out->dims[out->ndim - 1];
    memset(ds, 0, sizeof *ds);
    const cs_tensor *decl = &g->values[g->inputs[0]].decl;
    cs_tensor_set_shape(&ds->x, decl->dtype, decl->ndim, decl->dims);
    ds->x.dims[0] = N_SAMPLES;
    cs_tensor_set_shape(&ds->y, CS_DT_INT64, 1, (int64_t[]){N_SAMPLES});
    if (cs_tensor_alloc(&ds->x, NULL) || cs_tensor_alloc(&ds->y, NULL))
        abort();
    cs_rng r;
    cs_rng_seed(&r, seed);
    for (int64_t i = 0; i < cs_tensor_numel(&ds->x); i++)
        cs_tensor_set_f64(&ds->x, i, cs_rng_normal(&r));
    for (int64_t i = 0; i < N_SAMPLES; i++)
        ((int64_t *)ds->y.data)[i] = (int64_t)(cs_rng_u64(&r) % classes);
    ds->n = N_SAMPLES;
    ds->has_labels = ds->int_labels = true;
}

enum { N_PRODUCTS = 6 }; /* gradient, batch gradient, H v, G v, F v, F v of one layer */
static const char *const product_name[N_PRODUCTS] = {
    "gradient", "batch gradient", "Hessian-vector product", "GGN-vector product",
    "empirical Fisher-vector product", "layer-0 Hessian-vector product"};

typedef struct run {
    double loss, batch_loss;
    int64_t hits;
    double *out[N_PRODUCTS];
    int64_t micro;
    int lanes;
    bool ok;
} run;

static void run_free(run *r)
{
    for (int k = 0; k < N_PRODUCTS; k++)
        free(r->out[k]);
}

/* Every product with `threads` OpenMP threads at init. */
static run run_all(const cs_graph *g, const cs_dataset *ds, unsigned flags, int threads,
                   const double *v, const char *name)
{
    run r = {0};
    int64_t P = g->n_param_scalars;
    for (int k = 0; k < N_PRODUCTS; k++)
        r.out[k] = calloc((size_t)P, sizeof(double));
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    cs_objective o;
    cs_err err = {0};
    cs_status st = cs_objective_init(&o, g, ds, NULL, CS_LOSS_CE, BATCH, CS_AD_HVP | flags, &err);
    if (!st) {
        r.micro = o.micro;
        r.lanes = o.n_lanes;
        st = cs_objective_gradient(&o, &r.loss, r.out[0], &err);
        if (!st)
            st = cs_objective_batch_gradient(&o, 2 * BATCH, &r.batch_loss, &r.hits, r.out[1],
                                             &err);
        if (!st)
            st = cs_objective_hvp(&o, v, -1, r.out[2], &err);
        if (!st)
            st = cs_objective_ggnvp(&o, v, -1, r.out[3], &err);
        if (!st)
            st = cs_objective_empfvp(&o, v, -1, r.out[4], &err);
        if (!st)
            st = cs_objective_hvp(&o, v, 0, r.out[5], &err);
        cs_objective_free(&o);
    }
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    r.ok = ok(st == CS_OK, "%s: every product with %d thread(s)%s (%s)", name, threads,
              flags & CS_OBJ_WHOLE_BATCH ? ", whole batches" : "", err.msg);
    return r;
}

static bool same(const run *a, const run *b, int64_t P)
{
    bool eq = a->loss == b->loss && a->batch_loss == b->batch_loss && a->hits == b->hits;
    for (int k = 0; k < N_PRODUCTS; k++)
        eq = eq && memcmp(a->out[k], b->out[k], sizeof(double) * (size_t)P) == 0;
    return eq;
}

static void test_model(const char *name, double tol)
{
    cs_graph *g = test_load_model(name);
    if (!g)
        return;
    cs_dataset ds;
    make_dataset(&ds, g, 3);
    int64_t P = g->n_param_scalars;
    double *v = malloc(sizeof(double) * (size_t)P);
    cs_rng r;
    cs_rng_seed(&r, 9);
    for (int64_t i = 0; i < P; i++)
        v[i] = cs_rng_normal(&r);

    run whole = run_all(g, &ds, CS_OBJ_WHOLE_BATCH, 2, v, name);
    run one = run_all(g, &ds, 0, 1, v, name);
    run two = run_all(g, &ds, 0, 2, v, name);
    run three = run_all(g, &ds, 0, 3, v, name);
    if (whole.ok && one.ok && two.ok && three.ok) {
        ok(whole.micro == BATCH && whole.lanes == 1 && one.micro == 8 && one.lanes == 1 &&
               two.lanes == 2 && three.lanes == 2,
           "%s: micro-batches of %lld (whole: %lld) on 1, %d and %d lanes (batch %d: 2 "
           "micro-batches)",
           name, (long long)one.micro, (long long)whole.micro, two.lanes, three.lanes, BATCH);
        ok(same(&one, &two, P) && same(&one, &three, P),
           "%s: loss, hits and every product identical with 1, 2 and 3 threads", name);
        double loss_err = fabs(one.loss - whole.loss) / fabs(whole.loss);
        ok(loss_err <= tol && one.hits == whole.hits &&
               fabs(one.batch_loss - whole.batch_loss) <= tol * fabs(whole.batch_loss),
           "%s: loss as with whole batches (rel err %.2g)", name, loss_err);
        for (int k = 0; k < N_PRODUCTS; k++) {
            double d = 0, m = 0;
            for (int64_t i = 0; i < P; i++) {
                d = fmax(d, fabs(one.out[k][i] - whole.out[k][i]));
                m = fmax(m, fabs(whole.out[k][i]));
            }
            ok(m > 0 && d <= tol * m, "%s: %s as with whole batches (max err %.2g of %.2g)",
               name, product_name[k], d, m);
        }
    }
    run_free(&whole);
    run_free(&one);
    run_free(&two);
    run_free(&three);
    free(v);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    /* float64 models: only the summation order differs */
    test_model("tiny_mlp64", 1e-12);
    test_model("tiny_cnn64", 1e-12);
    /* the bundled float32 CNN: float rounding of the micro-batches' GEMMs */
    test_model("cnn", 1e-5);
    return tap_done();
}
