/* Plots as inline SVG, drawn here (no library, no script): line plots with
 * optional log axes, and grouped bar charts.  Every figure is one <svg> with
 * the given id, a title, labelled axes with ticks, and a legend. */
#ifndef CS_REPORT_SVG_H
#define CS_REPORT_SVG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct svg_series {
    const char *name;
    const double *x, *y;   /* n points; bar charts read y only (one per category) */
    int64_t n;
} svg_series;

typedef struct svg_axes {
    const char *title, *xlabel, *ylabel;
    bool logx, logy;       /* points with x <= 0 (logx) or y <= 0 (logy) are left out */
} svg_axes;

/* A line plot of the series (markers at the points when markers is set). */
void svg_line_plot(FILE *f, const char *id, const svg_axes *ax, const svg_series *s, int ns, bool markers);

/* Grouped bars: category c gets one bar per series, of height s[k].y[c]. */
void svg_bar_plot(FILE *f, const char *id, const svg_axes *ax, const char *const *categories, int n_categories,
                  const svg_series *s, int ns);

/* text with &, <, >, " escaped for HTML and SVG. */
void svg_escape(FILE *f, const char *text);

#endif
