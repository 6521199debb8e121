/* Reader of the curvature fixtures written by tools/make_curvature_fixtures.py:
 * records 'matrix NAME ROWS COLS' + ROWS lines, 'vector NAME LEN' + 1 line. */
#ifndef CS_TESTS_CURV_FIXTURE_H
#define CS_TESTS_CURV_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fx_record {
    char name[96];
    long rows, cols;
    double *v;
} fx_record;

typedef struct fx_file {
    int n;
    fx_record *r;
} fx_file;

static inline int fx_load(fx_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    FILE *in = fopen(path, "r");
    if (!in)
        return -1;
    char head[256];
    int cap = 0;
    while (fscanf(in, "%255s", head) == 1) {
        if (head[0] == '#') {
            int ch;
            while ((ch = fgetc(in)) != '\n' && ch != EOF)
                ;
            continue;
        }
        fx_record rec = {0};
        if (strcmp(head, "matrix") == 0) {
            if (fscanf(in, "%95s %ld %ld", rec.name, &rec.rows, &rec.cols) != 3)
                break;
        } else if (strcmp(head, "vector") == 0) {
            if (fscanf(in, "%95s %ld", rec.name, &rec.cols) != 2)
                break;
            rec.rows = 1;
        } else {
            break;
        }
        rec.v = malloc(sizeof(double) * (size_t)(rec.rows * rec.cols + 1));
        for (long i = 0; i < rec.rows * rec.cols; i++)
            if (fscanf(in, "%lf", &rec.v[i]) != 1) {
                fclose(in);
                free(rec.v);
                return -1;
            }
        if (f->n == cap) {
            cap = cap ? 2 * cap : 64;
            f->r = realloc(f->r, sizeof *f->r * (size_t)cap);
        }
        f->r[f->n++] = rec;
    }
    fclose(in);
    return 0;
}

static inline const fx_record *fx_get(const fx_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->r[i].name, name) == 0)
            return &f->r[i];
    return NULL;
}

static inline void fx_free(fx_file *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->r[i].v);
    free(f->r);
}

#endif
