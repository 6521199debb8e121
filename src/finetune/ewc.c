#include "finetune/ewc.h"

#include <stdlib.h>
#include <string.h>

cs_status cs_ewc_alloc(cs_ewc *e, int64_t n, cs_err *err)
{
    memset(e, 0, sizeof *e);
    e->n = n;
    e->lambda = 1;
    e->fisher = calloc((size_t)n + 1, sizeof(double));
    e->anchor = calloc((size_t)n + 1, sizeof(double));
    if (!e->fisher || !e->anchor) {
        cs_ewc_free(e);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the EWC penalty of %lld parameters", (long long)n);
    }
    return CS_OK;
}

void cs_ewc_free(cs_ewc *e)
{
    free(e->fisher);
    free(e->anchor);
    e->fisher = e->anchor = NULL;
    e->n = 0;
}

double cs_ewc_penalty(const cs_ewc *e, const double *theta, double *grad, int64_t i0, int64_t i1)
{
    /* Kirkpatrick et al. 2017, eq. 3: (lambda / 2) sum_i F_i (theta_i - theta*_i)^2 */
    double sum = 0;
    for (int64_t i = i0; i < i1; i++) {
        double d = theta[i] - e->anchor[i], fd = e->fisher[i] * d;
        sum += fd * d;
        if (grad)
            grad[i] += e->lambda * fd;
    }
    return 0.5 * e->lambda * sum;
}
