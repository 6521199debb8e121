/* What the operator tests checked, for the op-table contract
 * (tests/interp/test_op_contract.c).
 *
 * cover_note("vjp", "Conv") prints the TAP comment "# covers vjp Conv" the
 * first time a test binary checks that rule of that operator, so the
 * contract can walk the op table and name every operator a rule check is
 * missing for.  The notes come from the checking code itself (op_test_run's
 * successful forward, fd_check_op's comparisons), never from a list kept
 * by hand. */
#ifndef CS_TESTS_COVERAGE_H
#define CS_TESTS_COVERAGE_H

#include <stdio.h>
#include <string.h>

#define COVER_MAX 512

static inline void cover_note(const char *rule, const char *op)
{
    static struct {
        const char *rule, *op;
    } seen[COVER_MAX];
    static int n_seen;
    for (int i = 0; i < n_seen; i++)
        if (strcmp(seen[i].rule, rule) == 0 && strcmp(seen[i].op, op) == 0)
            return;
    if (n_seen < COVER_MAX) {
        seen[n_seen].rule = rule;
        seen[n_seen].op = op;
        n_seen++;
    }
    printf("# covers %s %s\n", rule, op);
    fflush(stdout);
}

#endif
