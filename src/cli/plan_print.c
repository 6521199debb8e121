/* The plan before the work (curv/mem_plan.h), formatted: per layer its
 * buffers, then what no layer owns, the total against the limit and the
 * passes over the data; and the refusal of a run above --max-memory.
 * Formatting and the limit's default only: the numbers come from the
 * library. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "base/dist.h"
#include "base/meminfo.h"
#include "cli/cli.h"
#include "curv/mem_plan.h"

/* Buffers below a thousandth of the total (at most 64 KiB) are summed
 * into one row per layer: the tables and small state every layer has
 * would hide the ones that matter. */
#define SMALL_ITEM_BYTES ((int64_t)64 << 10)

int cli_parse_memory(void *target, const char *cmd, const char *value)
{
    cs_err err = {0};
    if (cs_mem_parse_size(value, target, &err))
        return cli_usage_error(cmd, "--max-memory: %s", err.msg);
    return 0;
}

int64_t cli_memory_default(void)
{
    /* What is free now plus what the process already holds: the plan
     * counts the process's own resident memory as part of the run. */
    int64_t avail = cs_mem_available_bytes(), resident = cs_mem_resident_bytes();
    if (avail < 0)
        return -1;
    return avail + (resident > 0 ? resident : 0);
}

/* what without its " of layer 'NAME'", which the layer column says. */
static const char *shown_what(const cs_mem_item *it, char *buf, size_t size)
{
    snprintf(buf, size, "%s", it->what);
    char *s = strstr(buf, " of layer '");
    if (s && it->layer[0]) {
        char *e = strchr(s + strlen(" of layer '"), '\'');
        memmove(s, e ? e + 1 : s + strlen(s), strlen(e ? e + 1 : s + strlen(s)) + 1);
    }
    return buf;
}

/* One layer's rows (layer "" : what no layer owns). */
static void print_layer(FILE *f, const cs_mem_plan *p, const char *layer)
{
    int64_t fold = p->total_bytes / 1000 < SMALL_ITEM_BYTES ? p->total_bytes / 1000 : SMALL_ITEM_BYTES;
    int64_t small = 0, total = 0;
    int n_small = 0, n_big = 0;
    char b[32];
    const char *shown = layer[0] ? layer : "(shared)";
    for (int i = 0; i < p->n_items; i++) {
        const cs_mem_item *it = &p->items[i];
        if (strcmp(it->layer, layer) != 0)
            continue;
        total += it->bytes;
        if (it->bytes < fold && it->source != CS_MEM_PROCESS && it->source != CS_MEM_MODEL &&
            it->source != CS_MEM_DATA) {
            small += it->bytes, n_small++;
            continue;
        }
        char w[sizeof it->what];
        fprintf(f, "%-24.24s %-12s %-64.64s %12s\n", shown, cs_mem_source_name(it->source),
                shown_what(it, w, sizeof w), cs_mem_format(it->bytes, b, sizeof b));
        n_big++;
    }
    if (n_small)
        fprintf(f, "%-24.24s %-12s %-64.64s %12s\n", shown, "small", n_small == 1 ? "1 small buffer" : "small buffers",
                cs_mem_format(small, b, sizeof b));
    if (n_big + (n_small > 0) > 1)
        fprintf(f, "%-24.24s %-12s %-64.64s %12s\n", shown, "", "(layer total)", cs_mem_format(total, b, sizeof b));
}

void cli_plan_print(FILE *f, const cs_mem_plan *p, const cs_graph *g, int64_t limit)
{
    if (cs_dist_rank() > 0)
        return;
    char b[32], lim[32];
    fprintf(f, "plan: memory (estimated peak resident) and passes over the data\n");
    fprintf(f, "%-24s %-12s %-64s %12s\n", "layer", "kind", "what", "bytes");
    print_layer(f, p, "");
    /* the model's layers in its order, then any other name an item gave */
    for (int l = 0; g && l < g->n_layers; l++)
        print_layer(f, p, g->layers[l].name);
    for (int i = 0; i < p->n_items; i++) {
        bool first = true, known = false;
        for (int j = 0; j < i && first; j++)
            first = strcmp(p->items[j].layer, p->items[i].layer) != 0;
        for (int l = 0; g && l < g->n_layers && !known; l++)
            known = strcmp(g->layers[l].name, p->items[i].layer) == 0;
        if (first && !known && p->items[i].layer[0])
            print_layer(f, p, p->items[i].layer);
    }
    fprintf(f, "plan: total %s (%lld bytes)", cs_mem_format(p->total_bytes, b, sizeof b), (long long)p->total_bytes);
    if (limit > 0)
        fprintf(f, ", limit %s", cs_mem_format(limit, lim, sizeof lim));
    fprintf(f, "\n");
    for (int i = 0; i < p->n_passes; i++)
        fprintf(f, "plan: %lld pass%s: %s\n", (long long)p->passes[i].passes, p->passes[i].passes == 1 ? "" : "es",
                p->passes[i].what);
    fprintf(f, "plan: passes total %lld\n", (long long)p->total_passes);
}

int cli_plan_refuse(const cs_mem_plan *p, int64_t limit, const char *cmd)
{
    if (limit <= 0 || p->total_bytes <= limit)
        return 0;
    const cs_mem_item *big = cs_mem_plan_biggest(p);
    char e[32], l[32], b[32];
    const char *hint = big ? cs_mem_source_hint(big->source) : NULL;
    if (cs_dist_rank() > 0)
        return 2;
    fprintf(stderr, "curvscope %s: the run needs about %s, above the limit of %s (--max-memory); the biggest item is "
                    "%s (%s)%s%s\n",
            cmd, cs_mem_format(p->total_bytes, e, sizeof e), cs_mem_format(limit, l, sizeof l),
            big ? big->what : "none", cs_mem_format(big ? big->bytes : 0, b, sizeof b), hint ? ": try " : "",
            hint ? hint : "");
    return 2;
}

cs_status cli_plan_store(cs_store *db, int64_t run_id, const cs_mem_plan *p, cs_err *err)
{
    char bytes[32], passes[32];
    snprintf(bytes, sizeof bytes, "%lld", (long long)p->total_bytes);
    snprintf(passes, sizeof passes, "%lld", (long long)p->total_passes);
    cs_status st = cs_store_convention(db, run_id, "plan_bytes", bytes, err);
    return st ? st : cs_store_convention(db, run_id, "plan_passes", passes, err);
}
