/* The op table's contract: every registered operator has its forward and
 * its derivative rules checked.
 *
 * The operator tests note what they checked ("# covers RULE OP" TAP
 * comments, tests/interp/coverage.h): a successful forward in the unit
 * tests (test_ops_*, which compare outputs with references) or in a passing
 * ONNX backend node test (test_conformance) and, from
 * fd_check_op in the derivative tests (test_grad_*), the vjp, the jvp and
 * the rop (or the zero second-order term of a CS_OP_LINEAR op) compared
 * with central finite differences.  This test runs those binaries, walks
 * the op table (cs_op_count / cs_op_at) and fails, naming the operator and
 * the rule, for every row without all four checks.  A row that states
 * why it has no derivative (cs_op_def.no_derivative) needs the forward
 * check only; CS_OP_NO_GRAD without such a reason fails too, so "no
 * derivative by design" is always written down. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "interp/op.h"

#define MAX_NOTES 1024

typedef struct note {
    char rule[16];
    char op[64];
} note;

static note notes[MAX_NOTES];
static int n_notes;

/* Runs one test binary and keeps its "# covers" notes of the given rules
 * (a space-separated list).  Returns whether it ran and exited 0. */
static bool collect(const char *dir, const char *binary, const char *rules)
{
    char cmd[4096], line[1024];
    snprintf(cmd, sizeof cmd, "'%s/tests/interp/%s'", dir, binary);
    FILE *f = popen(cmd, "r");
    if (!f)
        return false;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        note n;
        if (sscanf(line, "# covers %15s %63s", n.rule, n.op) != 2)
            continue;
        char want[64];
        snprintf(want, sizeof want, " %s ", n.rule);
        char list[128];
        snprintf(list, sizeof list, " %s ", rules);
        if (!strstr(list, want) || n_notes >= MAX_NOTES)
            continue;
        notes[n_notes++] = n;
        found++;
    }
    int rc = pclose(f);
    return rc == 0 && found > 0;
}

static bool covered(const char *rule, const char *op)
{
    for (int i = 0; i < n_notes; i++)
        if (strcmp(notes[i].rule, rule) == 0 && strcmp(notes[i].op, op) == 0)
            return true;
    return false;
}

int main(void)
{
    const char *dir = getenv("top_builddir");
    if (!dir || !dir[0])
        dir = ".";
    /* the unit tests compare with naive references, the conformance runner
     * with the ONNX backend node tests' outputs */
    static const char *const forward_tests[] = {"test_ops_pointwise", "test_ops_spatial",
                                                "test_ops_linear_shape", "test_ops_movement",
                                                "test_ops_slicing", "test_conformance"};
    static const char *const grad_tests[] = {"test_grad_pointwise", "test_grad_spatial",
                                             "test_grad_linear_shape", "test_grad_movement",
                                             "test_grad_slicing", "test_grad_convt"};
    for (size_t i = 0; i < sizeof forward_tests / sizeof *forward_tests; i++)
        ok(collect(dir, forward_tests[i], "forward"), "%s runs and notes its forward checks",
           forward_tests[i]);
    for (size_t i = 0; i < sizeof grad_tests / sizeof *grad_tests; i++)
        ok(collect(dir, grad_tests[i], "vjp jvp rop"), "%s runs and notes its derivative checks",
           grad_tests[i]);

    for (int i = 0; i < cs_op_count(); i++) {
        const cs_op_def *op = cs_op_at(i);
        ok(covered("forward", op->name),
           "%s: forward checked by a unit test (test_ops_*) or a backend node test (test_conformance)",
           op->name);
        if (op->no_derivative) {
            ok(op->no_derivative[0] != '\0', "%s: no derivative by design: %s", op->name,
               op->no_derivative);
            continue;
        }
        ok(!(op->flags & CS_OP_NO_GRAD),
           "%s: CS_OP_NO_GRAD comes with a stated reason (cs_op_def.no_derivative)", op->name);
        ok(op->vjp && covered("vjp", op->name),
           "%s: vjp checked against finite differences (test_grad_*)", op->name);
        ok(op->jvp && covered("jvp", op->name),
           "%s: jvp checked against finite differences (test_grad_*)", op->name);
        ok((op->rop || (op->flags & CS_OP_LINEAR)) && covered("rop", op->name),
           "%s: rop (or CS_OP_LINEAR's zero second-order term) checked against finite differences "
           "(test_grad_*)",
           op->name);
    }
    return tap_done();
}
