/* What the layer-kind files share: the capture and per-sample contract of
 * interp/autodiff.h, the row type of interp/layer_kind.h, and an element
 * reader for the float or double tensors the plan holds. */
#ifndef CS_INTERP_LAYERS_RULES_H
#define CS_INTERP_LAYERS_RULES_H

#include "interp/autodiff.h"
#include "interp/layer_kind.h"

/* Element i of a float or double tensor. */
static inline double cs_layer_at(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

#endif
