/* Numeric CSV reader.
 *
 * Comma-separated numbers, one sample per line.  The first non-blank row
 * is a header when any of its fields is not a number.  Blank lines are
 * skipped; fields may be padded with spaces or wrapped in double quotes
 * (no embedded commas or quotes: this is for numbers, not general CSV). */
#include "data/readers.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct csv_table {
    int64_t rows, cols;
    double *values; /* rows * cols, row-major */
    int64_t cap;
    char **names;    /* cols header names (pointing into the text) or NULL */
    long long header_line; /* line number of the header, 0 when none (an 8 GiB file
                            * may hold more lines than an int counts) */
} csv_table;

static cs_status slurp(const char *path, char **text, size_t *len, cs_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cs_fail(err, CS_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        if ((unsigned long long)sb.st_size > (unsigned long long)CS_DATA_MAX_BYTES) {
            fclose(f);
            return cs_fail(err, CS_ERR_NOMEM, "%s: %lld bytes, over the limit of %lld for a data file",
                           path, (long long)sb.st_size, (long long)CS_DATA_MAX_BYTES);
        }
        cap = (size_t)sb.st_size + 1;
    }
    char *buf = malloc(cap);
    cs_status st = CS_OK;
    for (;;) {
        if (!buf) {
            st = cs_fail(err, CS_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
            break;
        }
        n += fread(buf + n, 1, cap - n - 1, f);
        if (ferror(f)) {
            st = cs_fail(err, CS_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
            break;
        }
        if (feof(f))
            break;
        if (n + 1 == cap) {
            /* not a regular file (a pipe): the same limit, as it grows */
            if (cap > (size_t)CS_DATA_MAX_BYTES) {
                st = cs_fail(err, CS_ERR_NOMEM, "%s: over the limit of %lld bytes for a data file",
                             path, (long long)CS_DATA_MAX_BYTES);
                break;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown)
                free(buf);
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (st) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return CS_OK;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trim spaces and one pair of surrounding double quotes, in place. */
static char *trim_field(char *s, char *end)
{
    while (s < end && is_space(*s))
        s++;
    while (end > s && is_space(end[-1]))
        end--;
    if (end - s >= 2 && *s == '"' && end[-1] == '"') {
        s++;
        end--;
    }
    *end = '\0';
    return s;
}

static int parse_number(const char *s, double *v)
{
    if (!*s)
        return 0;
    char *rest;
    errno = 0;
    *v = strtod(s, &rest);
    /* ERANGE on underflow still gives a usable tiny value; only overflow
     * (±HUGE_VAL) is refused. */
    if (*rest != '\0' || (errno == ERANGE && isinf(*v)))
        return 0;
    return 1;
}

/* Split a line (NUL-terminated, modified in place) into fields. Returns the
 * field count; stores up to max pointers in fields. */
static int64_t split_fields(char *line, char **fields, int64_t max)
{
    int64_t n = 0;
    char *p = line;
    for (;;) {
        char *comma = strchr(p, ',');
        char *end = comma ? comma : p + strlen(p);
        char *f = trim_field(p, end);
        if (n < max)
            fields[n] = f;
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return n;
}

static int line_is_blank(const char *s)
{
    while (*s && is_space(*s))
        s++;
    return *s == '\0';
}

/* Make room for `need` values. */
static cs_status table_reserve(csv_table *t, int64_t need, const char *path, cs_err *err)
{
    if (need <= t->cap)
        return CS_OK;
    int64_t max_values = cs_data_max_numel(CS_DT_DOUBLE);
    if (need > max_values)
        return cs_fail(err, CS_ERR_NOMEM, "%s: more than %lld values", path, (long long)max_values);
    int64_t next = t->cap ? t->cap : 1024;
    while (next < need)
        next *= 2;
    if (next > max_values)
        next = max_values;
    double *grown = realloc(t->values, (size_t)next * sizeof *grown);
    if (!grown)
        return cs_fail(err, CS_ERR_NOMEM, "%s: out of memory for %lld values", path,
                       (long long)next);
    t->values = grown;
    t->cap = next;
    return CS_OK;
}

static cs_status parse_table(const char *path, char *text, csv_table *t, cs_err *err)
{
    cs_status st = CS_OK;
    char *p = text;
    if ((unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
        p += 3; /* UTF-8 byte order mark, as spreadsheets write it */
    long long line_no = 0;
    long long first_line = 0;
    char **fields = NULL; /* one row's fields, cols long once known */
    while (*p) {
        line_no++;
        char *nl = strchr(p, '\n');
        char *next = nl ? nl + 1 : p + strlen(p);
        if (nl)
            *nl = '\0';
        char *line = p;
        p = next;
        if (line_is_blank(line))
            continue;
        int64_t n;
        if (!first_line) {
            first_line = line_no;
            n = 1;
            for (const char *c = line; *c; c++)
                n += *c == ',';
            fields = malloc((size_t)n * sizeof *fields);
            if (!fields)
                return cs_fail(err, CS_ERR_NOMEM, "%s: out of memory", path);
            t->cols = n = split_fields(line, fields, n);
            int numeric = 1;
            double v;
            for (int64_t i = 0; i < n && numeric; i++)
                numeric = parse_number(fields[i], &v);
            if (!numeric) {
                t->names = fields;
                t->header_line = line_no;
                fields = malloc((size_t)n * sizeof *fields);
                if (!fields)
                    return cs_fail(err, CS_ERR_NOMEM, "%s: out of memory", path);
                continue;
            }
        } else {
            n = split_fields(line, fields, t->cols);
        }
        if (n != t->cols) {
            st = cs_fail(err, CS_ERR_FORMAT,
                         "%s: line %lld has %lld fields, expected %lld as on line %lld", path, line_no,
                         (long long)n, (long long)t->cols, first_line);
            break;
        }
        if ((st = table_reserve(t, (t->rows + 1) * t->cols, path, err)))
            break;
        double *row = t->values + t->rows * t->cols;
        for (int64_t i = 0; i < n && !st; i++)
            if (!parse_number(fields[i], &row[i]))
                st = cs_fail(err, CS_ERR_FORMAT,
                             "%s: line %lld, column %lld: '%.40s' is not a number%s", path, line_no,
                             (long long)i + 1, fields[i], *fields[i] ? "" : " (empty field)");
        if (st)
            break;
        t->rows++;
    }
    free(fields);
    if (st)
        return st;
    if (t->rows == 0)
        return cs_fail(err, CS_ERR_FORMAT, "%s: no data rows%s", path,
                       t->header_line ? " after the header" : " (the file is empty)");
    return CS_OK;
}

/* Column index for spec (a 0-based number or a header name). */
static cs_status find_column(const char *path, const csv_table *t, const char *spec, int64_t *col,
                             cs_err *err)
{
    char *end;
    errno = 0;
    long long k = *spec >= '0' && *spec <= '9' ? strtoll(spec, &end, 10) : -1;
    if (k >= 0 && *end == '\0' && errno == 0) {
        if (k >= t->cols)
            return cs_fail(
                err, CS_ERR_USAGE,
                "%s: label column %lld is out of range: the file has %lld columns (0-based)", path,
                k, (long long)t->cols);
        *col = k;
        return CS_OK;
    }
    if (!t->names)
        return cs_fail(err, CS_ERR_USAGE,
                       "%s: no header row to find label column '%s' in (give a 0-based index)",
                       path, spec);
    for (int64_t i = 0; i < t->cols; i++)
        if (strcmp(t->names[i], spec) == 0) {
            *col = i;
            return CS_OK;
        }
    return cs_fail(err, CS_ERR_USAGE, "%s: no column named '%s' in the header on line %lld", path,
                   spec, t->header_line);
}

cs_status cs_read_csv(const char *path, const char *label_col, int as_labels, cs_tensor *out,
                      cs_err *err)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    cs_status st = slurp(path, &text, &len, err);
    if (st)
        return st;
    csv_table t = {0};
    if ((st = parse_table(path, text, &t, err)))
        goto done;

    int64_t label = -1;
    if (label_col && (st = find_column(path, &t, label_col, &label, err)))
        goto done;

    /* Which columns go out: the label alone, all but the label, or all. */
    int64_t first = 0, count = t.cols, skip = -1;
    if (as_labels && label >= 0) {
        first = label;
        count = 1;
    } else if (label >= 0) {
        skip = label;
        count = t.cols - 1;
    }
    if (count == 0) {
        st = cs_fail(err, CS_ERR_FORMAT, "%s: no data columns left besides label column %lld", path,
                     (long long)label);
        goto done;
    }

    int integral = 1;
    if (as_labels) {
        /* Integer labels are class indices; anything else is a real target. */
        for (int64_t r = 0; r < t.rows && integral; r++)
            for (int64_t c = first; c < first + count; c++) {
                double v = t.values[r * t.cols + c];
                if (!(v == floor(v) && fabs(v) <= 9007199254740992.0)) {
                    integral = 0;
                    break;
                }
            }
    }
    cs_dtype dt = as_labels && integral ? CS_DT_INT64 : CS_DT_DOUBLE;
    int64_t dims[2] = {t.rows, count};
    int ndim = as_labels && count == 1 ? 1 : 2;
    cs_tensor_set_shape(out, dt, ndim, dims);
    if ((st = cs_tensor_alloc(out, err)))
        goto done;
    int64_t k = 0;
    for (int64_t r = 0; r < t.rows; r++)
        for (int64_t c = first; c < first + (skip >= 0 ? t.cols : count); c++) {
            if (c == skip)
                continue;
            double v = t.values[r * t.cols + c];
            if (dt == CS_DT_INT64)
                ((int64_t *)out->data)[k++] = (int64_t)v;
            else
                ((double *)out->data)[k++] = v;
        }

done:
    if (st)
        cs_tensor_free(out);
    free(t.values);
    free(t.names);
    free(text);
    return st;
}
