/* curvscope quantize's rows: Hutchinson traces, HAWQ-V2 sensitivities, the
 * allocation and the written model's predicted and measured loss (rows.h). */
#include "config.h"

#include "store/rows.h"
#include "store/store_internal.h"

cs_status cs_store_quant_layer(cs_store *s, int64_t run_id, int64_t layer, double trace, double se, int probes,
                               const int *bits, const double *omega, const double *delta_sq, int n_bits,
                               int chosen_bits, cs_err *err)
{
    const store_col t[] = {SC_INT(run_id), SC_INT(layer), SC_REAL(trace), SC_REAL(se), SC_INT(probes)};
    cs_status st = store_insert_row(s, ST_HESSIAN_TRACE, t, 5, err, "insert layer %lld into hessian_traces",
                                    (long long)layer);
    for (int k = 0; k < n_bits && !st; k++) {
        const store_col c[] = {SC_INT(run_id), SC_INT(layer), SC_INT(bits[k]), SC_REAL(omega[k]),
                               SC_REAL(delta_sq[k])};
        st = store_insert_row(s, ST_QUANT_SENS, c, 5, err, "insert layer %lld into quant_sensitivity",
                              (long long)layer);
    }
    const store_col a[] = {SC_INT(run_id), SC_INT(layer), SC_INT(chosen_bits)};
    return st ? st
              : store_insert_row(s, ST_QUANT_ALLOC, a, 3, err, "insert layer %lld into quant_allocation",
                                 (long long)layer);
}

cs_status cs_store_quant_result(cs_store *s, int64_t run_id, double loss_before, double predicted,
                                double tolerance, double measured, int64_t size_bytes, const char *format,
                                cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_REAL(loss_before), SC_REAL(predicted), SC_REAL(tolerance),
                           SC_REAL(measured), SC_INT(size_bytes), SC_TEXT(format)};
    return store_insert_row(s, ST_QUANT_RESULT, c, 7, err, "insert the result into quant_result");
}
