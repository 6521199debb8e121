/* finetune's conventions rows: the options of the run and what they mean
 * (rows.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "store/rows.h"
#include "store/store_internal.h"

cs_status cs_store_write_finetune_conventions(cs_store *s, int64_t run_id, const cs_finetune_opts *fo,
                                              const char *curvature, cs_err *err)
{
    const char *const kv[][2] = {
        {"precond", fo->precond}, {"lr_schedule", fo->cosine ? "cosine" : "constant"},
        {"nesterov", fo->nesterov ? "1" : "0"},
        {"batchnorm_mode", fo->bn_train ? "running statistics updated from batch statistics (EMA), "
                                          "normalised with running statistics"
                                        : "running statistics frozen"},
        {"master_weights", "float64"},
        {"curvature", curvature},
        {"inverse", fo->cholesky ? "cholesky" : "eig"},
        {"kfac_damping", fo->pi_damping ? "pi split (Martens & Grosse 2015, 6.3)" : "sqrt(lambda) on both factors"},
        {"shampoo_graft", fo->graft ? "sgd norm per layer" : "none"},
        {"frozen_layers", fo->freeze ? fo->freeze : ""}};
    cs_status st = store_put_conventions(s, run_id, kv, sizeof kv / sizeof kv[0], err);
    /* Numbers with all their digits, so a run can be repeated exactly. */
    const double nums[] = {fo->lr, fo->momentum, fo->weight_decay, (double)fo->epochs, (double)fo->batch,
                           (double)fo->seed, fo->damping, fo->ema, (double)fo->update_interval,
                           (double)fo->max_full, (double)fo->mc_samples, fo->kl_clip};
    const char *const keys[] = {"lr", "momentum", "weight_decay", "epochs", "batch", "seed",
                                "damping", "ema", "update_interval", "max_full", "mc_samples", "kl_clip"};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0] && !st; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", nums[i]);
        st = cs_store_convention(s, run_id, keys[i], buf, err);
    }
    return st;
}

cs_status cs_store_write_fallback(cs_store *s, int64_t run_id, const char *note, cs_err *err)
{
    /* "layer NAME falls back ...": the key names the layer. */
    char key[160];
    const char *sp = strchr(note + 6, ' ');
    snprintf(key, sizeof key, "fallback.%.*s", sp ? (int)(sp - note - 6) : 100, note + 6);
    return cs_store_convention(s, run_id, key, note, err);
}
