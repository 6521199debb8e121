/* Datasets: input and label arrays read from files, served in batches.
 *
 * A SPEC is "KIND:PATH" with KIND one of
 *   idx  MNIST IDX (gzip or not; any IDX element type)
 *   npy  NumPy .npy (uint8, float32, float64, int64; C order)
 *   csv  numeric CSV; header row auto-detected; options after '#':
 *        csv:PATH#label=K  -- as --labels: column K (0-based index or header
 *        name) is the label; as --data: every column except K
 *   pb   one ONNX TensorProto
 * The first dimension of the array is the sample dimension.
 *
 * The raw arrays are kept in their file dtype; a batch is converted to the
 * model's input dtype and shape on the way into the plan's input buffer:
 * x' = (x * scale - mean[c]) / std[c], c the channel (dimension 1 of the
 * model input) when mean/std have one value per channel. */
#ifndef CS_DATA_DATASET_H
#define CS_DATA_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/tensor.h"

#define CS_NORM_MAX_CHANNELS 64

typedef struct cs_norm {
    double scale;                        /* default 1 */
    int n_mean;                          /* 0 (none), 1, or channels */
    double mean[CS_NORM_MAX_CHANNELS];
    int n_std;                           /* 0 (none), 1, or channels */
    double std[CS_NORM_MAX_CHANNELS];
} cs_norm;

typedef struct cs_dataset {
    int64_t n;          /* samples (after --samples) */
    cs_tensor x;        /* [n, ...] raw inputs, owned */
    cs_tensor y;        /* [n] integer labels or [n, K] real targets, owned; empty when none */
    bool has_labels;
    bool int_labels;    /* y is an integer type with shape [n] (or [n, 1]) */
    char source[256];   /* the data SPEC, for messages */
    /* Data parallelism (doc/design.md §2.12): a rank's dataset is the
     * contiguous slice [first, first + n) of n_total samples, and sums
     * over "the dataset" are summed over the ranks (cs_dist).  One
     * process: sliced false, first 0, n_total n. */
    bool sliced;
    int64_t first;
    int64_t n_total;
} cs_dataset;

/* Identity normalisation. */
void cs_norm_init(cs_norm *norm);
/* Parse "--scale" ("0.5", "1/255"), "--mean" / "--std" ("0.5" or
 * "0.485,0.456,0.406"; fractions allowed in each item). */
cs_status cs_norm_parse_scale(cs_norm *norm, const char *text, cs_err *err) CS_MUST_CHECK;
cs_status cs_norm_parse_mean(cs_norm *norm, const char *text, cs_err *err) CS_MUST_CHECK;
cs_status cs_norm_parse_std(cs_norm *norm, const char *text, cs_err *err) CS_MUST_CHECK;

/* Read a whole SPEC into an owned tensor.  role is "data" or "labels"
 * (selects the csv column behaviour) and names the option in messages. */
cs_status cs_data_read_spec(const char *spec, const char *role, cs_tensor *out,
                            cs_err *err) CS_MUST_CHECK;

/* Load inputs and (optional, labels_spec may be NULL) labels; max_samples 0
 * keeps all, else the first max_samples.  Checks that both have the same
 * sample count.  ds is initialised here; free with cs_dataset_free. */
cs_status cs_dataset_load(cs_dataset *ds, const char *data_spec, const char *labels_spec,
                          int64_t max_samples, cs_err *err) CS_MUST_CHECK;

/* Check that the samples fit a model input of shape `input` (dims[0] is the
 * batch dimension and is ignored): same element count per sample, and the
 * normalisation's channel count fits dims[1].  The message says both shapes. */
cs_status cs_dataset_check_input(const cs_dataset *ds, const cs_tensor *input,
                                 const cs_norm *norm, cs_err *err) CS_MUST_CHECK;

/* Convert samples [start, start + dst->dims[0]) into dst, which has the
 * model input's shape and dtype (float or double) and allocated data. */
cs_status cs_dataset_fill_inputs(const cs_dataset *ds, int64_t start, const cs_norm *norm,
                                 cs_tensor *dst, cs_err *err) CS_MUST_CHECK;

/* Integer label of sample i (int_labels only). */
int64_t cs_dataset_label(const cs_dataset *ds, int64_t i);
/* Real target row of sample i into out[0..k) (k = per-sample label count);
 * integer labels are given as themselves (one value). */
int64_t cs_dataset_target_width(const cs_dataset *ds);
void cs_dataset_target(const cs_dataset *ds, int64_t i, double *out);

/* Keep this rank's contiguous slice (base/dist.h's cs_dist_slice) of the
 * loaded samples, so that the ranks' slices concatenated are the
 * single-process order; n_total stays the whole count.  Fails when there
 * are fewer samples than ranks.  With one rank nothing changes. */
cs_status cs_dataset_keep_rank_slice(cs_dataset *ds, int rank, int size, cs_err *err) CS_MUST_CHECK;
/* Samples of the whole dataset across the ranks (n in one process). */
static inline int64_t cs_dataset_total(const cs_dataset *ds)
{
    return ds->sliced ? ds->n_total : ds->n;
}
void cs_dataset_free(cs_dataset *ds);

#endif
