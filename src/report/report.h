/* The HTML report of a database: one self-contained file (inline SVG drawn
 * by report/svg.c, inline CSS, no script, nothing fetched), readable
 * offline.  For one analyze run: its metadata and conventions; per layer
 * the eigenvalue decay of every curvature and representation; the
 * whole-network spectral density; lambda_max, trace and condition per
 * layer; importance histograms and the pruning curve; the step
 * diagnostics with the best preconditioner highlighted.  Then every
 * finetune run in the file: loss and accuracy curves per preconditioner and
 * their final numbers.  Figures have stable ids (fig-...) so that tests and
 * scripts can find them. */
#ifndef CS_REPORT_REPORT_H
#define CS_REPORT_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "store/store.h"

/* run <= 0: the latest analyze run that is done (the report still shows
 * the finetune runs when there is none).  Writes the page to out. */
cs_status cs_report_html(cs_store *db, int64_t run, FILE *out, cs_err *err) CS_MUST_CHECK;

#endif
