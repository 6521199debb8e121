#include "report/svg.h"

#include <math.h>
#include <string.h>

/* Canvas and plot area (pixels). */
enum { WIDTH = 640, HEIGHT = 360, LEFT = 78, RIGHT = 170, TOP = 34, BOTTOM = 52 };

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_COLORS ((int)(sizeof palette / sizeof palette[0]))

void svg_escape(FILE *f, const char *text)
{
    for (const char *p = text ? text : ""; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*p, f);
        }
    }
}

typedef struct range {
    double lo, hi;
    bool log;
} range;

static bool usable(double v, bool log)
{
    return isfinite(v) && (!log || v > 0);
}

static double tr(double v, bool log)
{
    return log ? log10(v) : v;
}

/* The data range of one axis in plot units (log10 for log axes), padded. */
static range data_range(const svg_series *s, int ns, bool use_x, bool log, bool from_zero)
{
    range r = {INFINITY, -INFINITY, log};
    for (int k = 0; k < ns; k++)
        for (int64_t i = 0; i < s[k].n; i++) {
            double v = use_x ? (s[k].x ? s[k].x[i] : (double)i) : s[k].y[i];
            double o = use_x ? s[k].y[i] : (s[k].x ? s[k].x[i] : (double)i);
            if (!usable(v, log) || !isfinite(o))
                continue;
            r.lo = fmin(r.lo, tr(v, log));
            r.hi = fmax(r.hi, tr(v, log));
        }
    if (!(r.lo <= r.hi))
        r.lo = 0, r.hi = 1;
    if (from_zero && !log)
        r.lo = fmin(r.lo, 0), r.hi = fmax(r.hi, 0);
    if (r.hi - r.lo < 1e-12 * fmax(1, fabs(r.hi)))
        r.lo -= 0.5, r.hi += 0.5;
    else if (!from_zero || log) {
        double pad = 0.04 * (r.hi - r.lo);
        r.lo -= pad, r.hi += pad;
    } else {
        r.hi += 0.04 * (r.hi - r.lo);
    }
    return r;
}

static double px_x(const range *r, double u)
{
    return LEFT + (u - r->lo) / (r->hi - r->lo) * (WIDTH - LEFT - RIGHT);
}

static double px_y(const range *r, double u)
{
    return HEIGHT - BOTTOM - (u - r->lo) / (r->hi - r->lo) * (HEIGHT - TOP - BOTTOM);
}

/* Tick positions in plot units: powers of ten on log axes (every k-th when
 * there are many), 1-2-5 steps on linear ones. */
static int ticks(const range *r, double *t, int max)
{
    int n = 0;
    if (r->log) {
        int a = (int)ceil(r->lo), b = (int)floor(r->hi), step = (b - a) / 6 + 1;
        for (int e = a; e <= b && n < max; e += step)
            t[n++] = e;
        if (n == 0)
            t[n++] = 0.5 * (r->lo + r->hi);
        return n;
    }
    double span = (r->hi - r->lo) / 5, mag = pow(10, floor(log10(span))), step = mag;
    if (span / mag > 5)
        step = 10 * mag;
    else if (span / mag > 2)
        step = 5 * mag;
    else if (span / mag > 1)
        step = 2 * mag;
    for (double v = ceil(r->lo / step) * step; v <= r->hi + 1e-9 * step && n < max; v += step)
        t[n++] = fabs(v) < 1e-12 * step ? 0 : v;
    return n;
}

static void tick_label(FILE *f, const range *r, double u)
{
    if (r->log)
        fprintf(f, "%g", pow(10, u));
    else
        fprintf(f, "%.4g", u);
}

static void frame(FILE *f, const char *id, const svg_axes *ax, const range *rx, const range *ry, bool x_ticks)
{
    fprintf(f, "<svg id=\"");
    svg_escape(f, id);
    fprintf(f, "\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\n",
            WIDTH, HEIGHT, WIDTH, HEIGHT);
    fprintf(f, "<title>");
    svg_escape(f, ax->title);
    fprintf(f, "</title>\n<text x=\"%d\" y=\"18\" font-size=\"13\" font-weight=\"bold\">", LEFT);
    svg_escape(f, ax->title);
    fprintf(f, "</text>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", LEFT,
            TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    double t[16];
    int n = ticks(ry, t, 16);
    for (int i = 0; i < n; i++) {
        double y = px_y(ry, t[i]);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", LEFT, WIDTH - RIGHT, y, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", LEFT - 5, y + 4);
        tick_label(f, ry, t[i]);
        fprintf(f, "</text>\n");
    }
    if (x_ticks) {
        n = ticks(rx, t, 16);
        for (int i = 0; i < n; i++) {
            double x = px_x(rx, t[i]);
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#444\"/>", x, x, HEIGHT - BOTTOM,
                    HEIGHT - BOTTOM + 4);
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", x, HEIGHT - BOTTOM + 16);
            tick_label(f, rx, t[i]);
            fprintf(f, "</text>\n");
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - 12);
    svg_escape(f, ax->xlabel);
    fprintf(f, "%s</text>\n", rx->log ? " (log scale)" : "");
    fprintf(f, "<text transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\">",
            TOP + (HEIGHT - TOP - BOTTOM) / 2);
    svg_escape(f, ax->ylabel);
    fprintf(f, "%s</text>\n", ry->log ? " (log scale)" : "");
}

static void legend(FILE *f, const svg_series *s, int ns)
{
    for (int k = 0; k < ns && k < 20; k++) {
        int y = TOP + 8 + 16 * k;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"10\" fill=\"%s\"/>", WIDTH - RIGHT + 10, y - 9,
                palette[k % N_COLORS]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", WIDTH - RIGHT + 26, y);
        svg_escape(f, s[k].name);
        fprintf(f, "</text>\n");
    }
}

void svg_line_plot(FILE *f, const char *id, const svg_axes *ax, const svg_series *s, int ns, bool markers)
{
    range rx = data_range(s, ns, true, ax->logx, false), ry = data_range(s, ns, false, ax->logy, false);
    frame(f, id, ax, &rx, &ry, true);
    for (int k = 0; k < ns; k++) {
        const char *color = palette[k % N_COLORS];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
        for (int64_t i = 0; i < s[k].n; i++) {
            double x = s[k].x ? s[k].x[i] : (double)i, y = s[k].y[i];
            if (usable(x, ax->logx) && usable(y, ax->logy))
                fprintf(f, "%.1f,%.1f ", px_x(&rx, tr(x, ax->logx)), px_y(&ry, tr(y, ax->logy)));
        }
        fprintf(f, "\"/>\n");
        for (int64_t i = 0; markers && i < s[k].n; i++) {
            double x = s[k].x ? s[k].x[i] : (double)i, y = s[k].y[i];
            if (usable(x, ax->logx) && usable(y, ax->logy))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", px_x(&rx, tr(x, ax->logx)),
                        px_y(&ry, tr(y, ax->logy)), color);
        }
    }
    legend(f, s, ns);
    fprintf(f, "</svg>\n");
}

void svg_bar_plot(FILE *f, const char *id, const svg_axes *ax, const char *const *categories, int n_categories,
                  const svg_series *s, int ns)
{
    range ry = data_range(s, ns, false, ax->logy, true), rx = {0, n_categories > 0 ? n_categories : 1, false};
    frame(f, id, ax, &rx, &ry, false);
    double slot = (double)(WIDTH - LEFT - RIGHT) / (n_categories > 0 ? n_categories : 1);
    double bar = 0.8 * slot / (ns > 0 ? ns : 1), base = px_y(&ry, ry.log ? ry.lo : 0);
    for (int c = 0; c < n_categories; c++) {
        for (int k = 0; k < ns; k++) {
            double v = c < s[k].n ? s[k].y[c] : NAN;
            if (!usable(v, ax->logy))
                continue;
            double top = px_y(&ry, tr(v, ax->logy)), x = LEFT + c * slot + 0.1 * slot + k * bar;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", x,
                    fmin(top, base), bar, fabs(base - top), palette[k % N_COLORS]);
            svg_escape(f, s[k].name);
            fprintf(f, ": %.6g</title></rect>\n", v);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"end\" transform=\"rotate(-35 %.1f %d)\">",
                LEFT + (c + 0.5) * slot, HEIGHT - BOTTOM + 14, LEFT + (c + 0.5) * slot, HEIGHT - BOTTOM + 14);
        svg_escape(f, categories[c]);
        fprintf(f, "</text>\n");
    }
    legend(f, s, ns);
    fprintf(f, "</svg>\n");
}
