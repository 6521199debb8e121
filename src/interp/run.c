#include "interp/run.h"

#include <string.h>

#include "interp/plan.h"

cs_status cs_run_model(const cs_graph *g, const cs_tensor *inputs, cs_tensor *outputs,
                       cs_err *err)
{
    cs_plan plan;
    for (int k = 0; k < g->n_outputs; k++)
        memset(&outputs[k], 0, sizeof outputs[k]);
    cs_status st = cs_plan_prepare(&plan, g, inputs, err);
    if (st)
        return st;
    st = cs_plan_forward(&plan, err);
    for (int k = 0; st == CS_OK && k < g->n_outputs; k++)
        st = cs_tensor_copy(&outputs[k], cs_plan_output(&plan, k), err);
    if (st)
        for (int k = 0; k < g->n_outputs; k++)
            cs_tensor_free(&outputs[k]);
    cs_plan_free(&plan);
    return st;
}
