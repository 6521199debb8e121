/* cs_kfac_row_layout (curv/kfac.h): the layer-kind row's layout handed to
 * the K-FAC module.  A file of its own because interp/layer_kind.h and
 * curv/kfac.h both name CS_KFAC_NONE and CS_KFAC_ROWS. */
#include "interp/layer_kind.h"

#include <stdbool.h>
#include <stdint.h>

cs_status cs_kfac_row_layout(const cs_graph *g, int l, bool *ok, int64_t *groups, int64_t *dG, int64_t *fan_in,
                             int64_t **kron, cs_err *err);

cs_status cs_kfac_row_layout(const cs_graph *g, int l, bool *ok, int64_t *groups, int64_t *dG, int64_t *fan_in,
                             int64_t **kron, cs_err *err)
{
    cs_layer_layout lay;
    cs_status st = cs_layer_layout_make(g, l, &lay, err);
    *ok = !st && lay.kfac != CS_KFAC_NONE;
    *kron = NULL;
    if (*ok) {
        *groups = lay.groups, *dG = lay.dG, *fan_in = lay.fan_in;
        *kron = lay.kron;
        lay.kron = NULL;
    }
    cs_layer_layout_free(&lay);
    return st;
}
