#include "curv/mem_plan.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void cs_mem_plan_init(cs_mem_plan *p)
{
    memset(p, 0, sizeof *p);
}

void cs_mem_plan_free(cs_mem_plan *p)
{
    free(p->items);
    free(p->passes);
    memset(p, 0, sizeof *p);
}

/* Room for one more element of an array grown by doubling. */
static int grow(void **a, int *cap, int n, size_t size)
{
    if (n < *cap)
        return 0;
    int want = *cap ? 2 * *cap : 32;
    void *b = realloc(*a, (size_t)want * size);
    if (!b)
        return -1;
    *a = b;
    *cap = want;
    return 0;
}

/* The NAME of a "layer 'NAME'" in what, into out ("" when none). */
static void layer_of(const char *what, char *out, size_t size)
{
    out[0] = 0;
    const char *s = strstr(what, "layer '");
    if (!s)
        return;
    s += strlen("layer '");
    const char *e = strchr(s, '\'');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n >= size)
        n = size - 1;
    memcpy(out, s, n);
    out[n] = 0;
}

cs_status cs_mem_plan_add(cs_mem_plan *p, cs_mem_source source, const char *layer, int64_t bytes, cs_err *err,
                          const char *what, ...)
{
    if (grow((void **)&p->items, &p->cap_items, p->n_items, sizeof *p->items)) {
        p->failed = 1;
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the memory plan");
    }
    cs_mem_item *it = &p->items[p->n_items++];
    memset(it, 0, sizeof *it);
    va_list ap;
    va_start(ap, what);
    vsnprintf(it->what, sizeof it->what, what, ap);
    va_end(ap);
    if (layer)
        snprintf(it->layer, sizeof it->layer, "%s", layer);
    else
        layer_of(it->what, it->layer, sizeof it->layer);
    it->source = source;
    it->bytes = bytes;
    it->phase = p->phase >= 0 && p->phase < CS_MEM_PHASES ? p->phase : CS_MEM_PHASES - 1;
    p->phase_bytes[it->phase] += bytes;
    int64_t most = 0;
    for (int k = 1; k < CS_MEM_PHASES; k++)
        most = p->phase_bytes[k] > most ? p->phase_bytes[k] : most;
    p->total_bytes = p->phase_bytes[0] + most;
    return CS_OK;
}

cs_status cs_mem_plan_add_passes(cs_mem_plan *p, int64_t passes, cs_err *err, const char *what, ...)
{
    if (grow((void **)&p->passes, &p->cap_passes, p->n_passes, sizeof *p->passes)) {
        p->failed = 1;
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the memory plan");
    }
    cs_pass_item *it = &p->passes[p->n_passes++];
    va_list ap;
    va_start(ap, what);
    vsnprintf(it->what, sizeof it->what, what, ap);
    va_end(ap);
    it->passes = passes;
    p->total_passes += passes;
    return CS_OK;
}

/* The engine names its buffers for out-of-memory messages (curv/alloc.h);
 * those names say what kind of buffer each is.  Order matters: a K-FAC
 * factor's row buffer is sized by the batch, not by the factor. */
cs_mem_source cs_mem_source_of(const char *what)
{
    static const struct {
        const char *key;
        cs_mem_source source;
    } rules[] = {
        {"row", CS_MEM_ROWS},           {"per-sample", CS_MEM_ROWS},       {"gather", CS_MEM_ROWS},
        {"squared inputs", CS_MEM_ROWS}, {"output Hessians'", CS_MEM_ROWS}, {"rotat", CS_MEM_ROWS},
        {"probe", CS_MEM_PROBES},       {"unit blocks", CS_MEM_FACTORED},  {"blocks' table", CS_MEM_DIAG},
        {"block", CS_MEM_BLOCK},        {"K-FAC", CS_MEM_FACTORED},        {"EK-FAC", CS_MEM_FACTORED},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (strstr(what, rules[i].key))
            return rules[i].source;
    return CS_MEM_DIAG;
}

const cs_mem_item *cs_mem_plan_biggest(const cs_mem_plan *p)
{
    const cs_mem_item *best = NULL, *any = NULL;
    for (int i = 0; i < p->n_items; i++) {
        const cs_mem_item *it = &p->items[i];
        if (!any || it->bytes > any->bytes)
            any = it;
        if (cs_mem_source_hint(it->source) && (!best || it->bytes > best->bytes))
            best = it;
    }
    return best ? best : any;
}

static const char *const source_names[CS_MEM_SOURCE_COUNT] = {
    [CS_MEM_PROCESS] = "process", [CS_MEM_MODEL] = "model",     [CS_MEM_DATA] = "data",
    [CS_MEM_INTERP] = "interpreter", [CS_MEM_ROWS] = "rows",    [CS_MEM_BLOCK] = "block",
    [CS_MEM_FACTORED] = "factored", [CS_MEM_DIAG] = "diag",     [CS_MEM_PROBES] = "probes",
    [CS_MEM_EIGEN] = "eigen-solve", [CS_MEM_RESULTS] = "results", [CS_MEM_LANCZOS] = "lanczos",
    [CS_MEM_PRECOND] = "precond", [CS_MEM_LAYOUT] = "layout",
};
_Static_assert(CS_MEM_SOURCE_COUNT == 14, "a name for every memory source");

const char *cs_mem_source_name(cs_mem_source s)
{
    return s >= 0 && s < CS_MEM_SOURCE_COUNT ? source_names[s] : "?";
}

const char *cs_mem_source_hint(cs_mem_source s)
{
    switch (s) {
    case CS_MEM_DATA: return "--samples";
    case CS_MEM_INTERP:
    case CS_MEM_ROWS: return "--batch";
    case CS_MEM_BLOCK:
    case CS_MEM_EIGEN: return "--max-full";
    case CS_MEM_FACTORED: return "--repr diag";
    case CS_MEM_PROBES: return "--probes";
    case CS_MEM_RESULTS: return "--repr";
    case CS_MEM_LANCZOS: return "--lanczos-steps";
    case CS_MEM_PRECOND: return "--precond diag";
    case CS_MEM_DIAG: return "--curvature";
    default: return NULL;
    }
}

cs_status cs_mem_parse_size(const char *text, int64_t *bytes, cs_err *err)
{
    const char *s = text;
    if (!isdigit((unsigned char)*s))
        return cs_fail(err, CS_ERR_USAGE, "'%s' is not a memory size (give e.g. 6G, 512M or bytes)", text);
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    static const char units[] = "KMGT";
    int shift = 0;
    if (*end) {
        const char *u = strchr(units, toupper((unsigned char)*end));
        if (!u)
            return cs_fail(err, CS_ERR_USAGE, "'%s' is not a memory size (give e.g. 6G, 512M or bytes)", text);
        shift = 10 * (int)(u - units + 1);
        end++;
        if (strcasecmp(end, "") != 0 && strcasecmp(end, "B") != 0 && strcasecmp(end, "iB") != 0)
            return cs_fail(err, CS_ERR_USAGE, "'%s' is not a memory size (give e.g. 6G, 512M or bytes)", text);
    }
    if (errno || v == 0 || v > (unsigned long long)INT64_MAX >> shift)
        return cs_fail(err, CS_ERR_USAGE, "memory size '%s' must be positive and below 8 EiB", text);
    *bytes = (int64_t)(v << shift);
    return CS_OK;
}

const char *cs_mem_format(int64_t bytes, char *buf, int size)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, (size_t)size, "%lld B", (long long)bytes);
    else
        snprintf(buf, (size_t)size, "%.1f %s", v, unit[u]);
    return buf;
}

int64_t cs_mem_model_bytes(const cs_graph *g)
{
    int64_t bytes = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == CS_VALUE_INITIALIZER || g->values[i].kind == CS_VALUE_CONSTANT)
            bytes += (int64_t)cs_tensor_bytes(&g->values[i].init);
    return bytes;
}

int64_t cs_mem_dataset_bytes(const cs_dataset *ds)
{
    return (int64_t)(cs_tensor_bytes(&ds->x) + cs_tensor_bytes(&ds->y));
}

cs_status cs_mem_plan_add_process(cs_mem_plan *p, const cs_graph *g, const cs_dataset *ds, int64_t resident,
                                  cs_err *err)
{
    int64_t model = cs_mem_model_bytes(g), data = ds ? cs_mem_dataset_bytes(ds) : 0;
    int64_t rest = resident - model - data;
    if (resident < 0)
        rest = CS_MEM_PROCESS_BYTES;
    else if (rest < 0)
        rest = 0;
    cs_status st = cs_mem_plan_add(p, CS_MEM_PROCESS, "", rest, err,
                                   "the process: binary, libraries, database%s",
                                   resident < 0 ? " (typical; resident memory unknown)" : "");
    if (!st)
        st = cs_mem_plan_add(p, CS_MEM_MODEL, "", model, err, "the model's initializers");
    if (!st && ds)
        st = cs_mem_plan_add(p, CS_MEM_DATA, "", data, err, "the dataset, %lld samples", (long long)ds->n);
    /* Threads' stacks and BLAS buffers, touched once the work starts. */
    if (!st)
        st = cs_mem_plan_add(p, CS_MEM_PROCESS, "", CS_MEM_THREADS_BYTES, err,
                             "the threads' stacks and BLAS buffers");
    return st;
}
