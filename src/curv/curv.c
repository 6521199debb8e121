#include "curv/curv.h"

#include <assert.h>
#include <string.h>

static const char *const curv_names[] = {
    [CS_CURV_HESSIAN] = "hessian", [CS_CURV_GGN] = "ggn", [CS_CURV_FISHER] = "fisher",
    [CS_CURV_FISHER_MC] = "fisher_mc", [CS_CURV_FISHER_EMP] = "fisher_emp",
};
static_assert(sizeof curv_names / sizeof curv_names[0] == CS_CURV_COUNT, "name every curvature");

static const char *const repr_names[] = {
    [CS_REPR_FULL] = "full", [CS_REPR_KFAC] = "kfac", [CS_REPR_DIAG] = "diag", [CS_REPR_UNIT] = "unit",
    [CS_REPR_EKFAC] = "ekfac",
};
static_assert(sizeof repr_names / sizeof repr_names[0] == CS_REPR_COUNT, "name every representation");

const char *cs_curv_name(cs_curv_kind k)
{
    return (unsigned)k < CS_CURV_COUNT ? curv_names[k] : "?";
}

const char *cs_repr_name(cs_repr_kind r)
{
    return (unsigned)r < CS_REPR_COUNT ? repr_names[r] : "?";
}

static cs_status parse_list(const char *text, const char *const *names, int count,
                            const char *what, unsigned *mask, cs_err *err)
{
    *mask = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int found = -1;
        for (int i = 0; i < count; i++)
            if (strlen(names[i]) == len && strncmp(names[i], p, len) == 0)
                found = i;
        if (found < 0) {
            char list[256] = "";
            for (int i = 0; i < count; i++) {
                strcat(list, i ? ", " : "");
                strcat(list, names[i]);
            }
            return cs_fail(err, CS_ERR_USAGE, "unknown %s '%.*s' (expected %s)", what, (int)len, p,
                           list);
        }
        *mask |= 1u << found;
        p = end ? end + 1 : p + len;
    }
    if (!*mask)
        return cs_fail(err, CS_ERR_USAGE, "empty %s list", what);
    return CS_OK;
}

cs_status cs_curv_parse_list(const char *text, unsigned *mask, cs_err *err)
{
    return parse_list(text, curv_names, CS_CURV_COUNT, "curvature", mask, err);
}

cs_status cs_repr_parse_list(const char *text, unsigned *mask, cs_err *err)
{
    return parse_list(text, repr_names, CS_REPR_COUNT, "representation", mask, err);
}

bool cs_curv_repr_valid(cs_curv_kind k, cs_repr_kind r, const char **why)
{
    /* K-FAC factors the block as E[delta delta^T] (x) E[a a^T], which needs
     * the curvature to be an expectation of outer products of gradients;
     * the Hessian is not one (its second-order terms have no such form). */
    if (k == CS_CURV_HESSIAN && (r == CS_REPR_KFAC || r == CS_REPR_EKFAC)) {
        if (why)
            *why = "the Hessian has no Kronecker factorisation (it is not an expectation of "
                   "gradient outer products); use ggn or fisher with kfac or ekfac";
        return false;
    }
    return true;
}
