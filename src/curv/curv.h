/* Curvature kinds and representations: the first two of doc/design.md §2's three
 * axes.  Each name table is the one place a value is added. */
#ifndef CS_CURV_CURV_H
#define CS_CURV_CURV_H

#include <stdbool.h>

#include "base/status.h"

typedef enum cs_curv_kind {
    CS_CURV_HESSIAN,    /* exact second derivative of the mean loss */
    CS_CURV_GGN,        /* (1/N) sum J^T Lambda J */
    CS_CURV_FISHER,     /* exact Fisher through the loss-Hessian factor (= GGN for ce, mse) */
    CS_CURV_FISHER_MC,  /* Monte-Carlo Fisher, S sampled labels per input */
    CS_CURV_FISHER_EMP, /* empirical Fisher, true labels */
    CS_CURV_COUNT
} cs_curv_kind;

typedef enum cs_repr_kind {
    CS_REPR_FULL, /* the whole block of a layer (or of the network) */
    CS_REPR_KFAC, /* Kronecker factors G (x) A */
    CS_REPR_DIAG, /* the diagonal */
    CS_REPR_UNIT, /* per output unit / channel blocks */
    CS_REPR_EKFAC, /* K-FAC's eigenbasis with the diagonal re-fitted (George et al. 2018) */
    CS_REPR_COUNT
} cs_repr_kind;

const char *cs_curv_name(cs_curv_kind k);
const char *cs_repr_name(cs_repr_kind r);

/* Parse a comma-separated list into a bit mask (1 << kind). */
cs_status cs_curv_parse_list(const char *text, unsigned *mask, cs_err *err) CS_MUST_CHECK;
cs_status cs_repr_parse_list(const char *text, unsigned *mask, cs_err *err) CS_MUST_CHECK;

/* Whether the combination makes sense; if not, *why says so. */
bool cs_curv_repr_valid(cs_curv_kind k, cs_repr_kind r, const char **why);

#endif
