#include "cli/cli.h"

#include <math.h>

void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* Symbolic dimensions (-1) print as null. */
void json_shape(FILE *f, const cs_tensor *t)
{
    fputc('[', f);
    for (int i = 0; i < t->ndim; i++) {
        if (i)
            fputs(", ", f);
        if (t->dims[i] < 0)
            fputs("null", f);
        else
            fprintf(f, "%lld", (long long)t->dims[i]);
    }
    fputc(']', f);
}

/* JSON has no NaN or infinity: those print as null. */
void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.17g", v);
    else
        fputs("null", f);
}
