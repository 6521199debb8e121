/* A plan before the work: the memory and the passes over the data each
 * requested result needs, per layer and in total, from the same options
 * the computation gets and without computing anything.
 *
 * The curvature engine's buffers are not re-derived here: cs_curvature_plan
 * (curv/engine.h) runs the engine's own planning code with its checked
 * allocations in tally mode (curv/alloc.h), so each buffer is recorded by
 * the name and size its allocation would have had.  What the engine does
 * not allocate through that path (the interpreter's plans, the eigen-solves
 * of the results, the process itself) is added by its owner as an item of
 * its own.  The estimate is of the peak resident memory: every item is
 * taken as held at once, the results' transient eigen-solve as the largest
 * one (doc/design.md §3.1). */
#ifndef CS_CURV_MEM_PLAN_H
#define CS_CURV_MEM_PLAN_H

#include <stdint.h>

#include "base/status.h"
#include "data/dataset.h"
#include "graph/graph.h"

/* Where an item comes from: says which option shrinks it (cs_mem_item_hint). */
typedef enum cs_mem_source {
    CS_MEM_PROCESS,     /* the binary, its libraries, the database: resident before the work */
    CS_MEM_MODEL,       /* the model's initializers */
    CS_MEM_DATA,        /* the dataset in memory */
    CS_MEM_INTERP,      /* plans and derivative buffers for a batch */
    CS_MEM_ROWS,        /* per-sample rows and buffers sized by the batch */
    CS_MEM_BLOCK,       /* a dense block (full, the Hessian's columns, the network's) */
    CS_MEM_FACTORED,    /* K-FAC / EK-FAC / unit-wise accumulators */
    CS_MEM_DIAG,        /* diagonals and small per-layer state */
    CS_MEM_PROBES,      /* Hutchinson probes */
    CS_MEM_EIGEN,       /* a dense eigen-solve's copy and LAPACK workspace */
    CS_MEM_RESULTS,     /* results kept until they are stored */
    CS_MEM_LANCZOS,     /* Lanczos vectors of the matrix-free spectra */
    CS_MEM_PRECOND,     /* a preconditioner's state (finetune) */
    CS_MEM_LAYOUT,      /* the layers' parameter indices (interp/layer_kind.h cs_layer_layout) */
    CS_MEM_SOURCE_COUNT
} cs_mem_source;

typedef struct cs_mem_item {
    char layer[64];     /* the layer's name, "" for what no single layer owns */
    char what[160];
    cs_mem_source source;
    int phase;          /* 0: held through the whole run, else the phase that holds it */
    int64_t bytes;
} cs_mem_item;

typedef struct cs_pass_item {
    char what[120];
    int64_t passes;     /* passes over the data (a matrix-vector product over the data is one) */
} cs_pass_item;

/* Phases of a run run one after the other and free what they held, so the
 * peak is what the whole run holds (phase 0) plus the largest phase. */
#define CS_MEM_PHASES 8

typedef struct cs_mem_plan {
    cs_mem_item *items;
    int n_items, cap_items;
    cs_pass_item *passes;
    int n_passes, cap_passes;
    int phase;          /* the phase new items belong to (0 at init); a caller moves it on */
    int64_t phase_bytes[CS_MEM_PHASES];
    int64_t total_bytes; /* phase_bytes[0] + the largest other phase */
    int64_t total_passes;
    int failed;         /* an item could not be recorded (out of memory): the plan is incomplete */
} cs_mem_plan;

void cs_mem_plan_init(cs_mem_plan *p);
void cs_mem_plan_free(cs_mem_plan *p);

/* Append an item (what: printf format).  The layer is taken from a
 * "layer 'NAME'" in what when layer is NULL. */
cs_status cs_mem_plan_add(cs_mem_plan *p, cs_mem_source source, const char *layer, int64_t bytes, cs_err *err,
                          const char *what, ...) CS_PRINTF(6, 7) CS_MUST_CHECK;
cs_status cs_mem_plan_add_passes(cs_mem_plan *p, int64_t passes, cs_err *err, const char *what, ...)
    CS_PRINTF(4, 5) CS_MUST_CHECK;

/* The source of a tallied allocation, from the name the engine gives it. */
cs_mem_source cs_mem_source_of(const char *what);

/* The largest item an option shrinks (cs_mem_source_hint), or else the
 * largest of all; NULL when there is none. */
const cs_mem_item *cs_mem_plan_biggest(const cs_mem_plan *p);

/* The option that shrinks an item of this source ("--max-full",
 * "--repr diag", "--batch", ...), or NULL for what no option changes. */
const char *cs_mem_source_hint(cs_mem_source s);
const char *cs_mem_source_name(cs_mem_source s);

/* Bytes of the model's initializers and constants, and of a dataset's
 * inputs and labels. */
int64_t cs_mem_model_bytes(const cs_graph *g);
int64_t cs_mem_dataset_bytes(const cs_dataset *ds);

/* What the process holds before the work, measured: resident (the VmRSS
 * of base/meminfo.h, taken with the model and dataset loaded; -1 when
 * unknown: CS_MEM_PROCESS_BYTES is taken) split into the model, the
 * dataset (NULL: none) and the rest; and what the work's threads touch
 * when they start (CS_MEM_THREADS_BYTES, measured on this project's
 * machine as the rise of resident memory over the first batch of a small
 * run, doc/design.md §3.1). */
#define CS_MEM_PROCESS_BYTES ((int64_t)24 << 20)
#define CS_MEM_THREADS_BYTES ((int64_t)2 << 20)
cs_status cs_mem_plan_add_process(cs_mem_plan *p, const cs_graph *g, const cs_dataset *ds, int64_t resident,
                                  cs_err *err) CS_MUST_CHECK;

/* Parse a memory size: digits with an optional K, M, G or T (powers of
 * 1024; "KiB", "KB", "k" alike) suffix, e.g. "6G", "512M", "1048576".
 * Zero, negative, fractional or unknown suffixes are usage errors. */
cs_status cs_mem_parse_size(const char *text, int64_t *bytes, cs_err *err) CS_MUST_CHECK;

/* bytes as "12.3 MiB" into buf. */
const char *cs_mem_format(int64_t bytes, char *buf, int size);

#endif
