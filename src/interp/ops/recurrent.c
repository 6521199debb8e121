/* Recurrent layers: RNN, GRU and LSTM (forward, reverse, bidirectional;
 * layout 0 [T, B, I] or 1 [B, T, I]; initial states given or not; LSTM
 * peepholes).  sequence_lens must be absent (or every sequence full
 * length), the activations the defaults (RNN tanh; GRU sigmoid, tanh; LSTM
 * sigmoid, tanh, tanh), and clip and input_forget unset: anything else is
 * refused with its name.
 *
 * Cells (ONNX's equations; W, R, Wb, Rb per gate, h the previous state):
 *   RNN   h' = tanh(W x + R h + Wb + Rb)
 *   GRU   z = s(Wz x + Rz h + Wbz + Rbz),  r = s(Wr x + Rr h + Wbr + Rbr),
 *         n = tanh(Wh x + Rh (r h) + Rbh + Wbh)          (linear_before_reset 0)
 *         n = tanh(Wh x + r (Rh h + Rbh) + Wbh)          (linear_before_reset 1)
 *         h' = (1 - z) n + z h
 *   LSTM  i = s(Wi x + Ri h + Pi c + b_i),  f = s(Wf x + Rf h + Pf c + b_f),
 *         g = tanh(Wc x + Rc h + b_c),  c' = f c + i g,
 *         o = s(Wo x + Ro h + Po c' + b_o),  h' = o tanh(c')
 * with s the logistic function; gate blocks are stored i, o, f, c (LSTM)
 * and z, r, h (GRU).
 *
 * Derivatives.  The forward and the backward through time (BPTT) are
 * written once, on dual numbers (value, tangent): run with the inputs'
 * tangents, the forward's tangent parts are the jvp; the backward's value
 * parts are the vjp, and run with the inputs' tangents and a constant
 * output gradient, its tangent parts are exactly the rop term
 * d/de vjp(x + e t; gy) — forward-over-reverse (Pearlmutter 1994) applied
 * inside the op.  The batch's sequences are independent and run one after
 * another; the derivative passes cost about twice the forward's
 * arithmetic, in plain loops (the gate products are matrix-vector sized). */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"
#include "interp/ops/recurrent.h"

typedef struct dual {
    double v, d;
} dual;

static inline dual dd(double v, double d)
{
    return (dual){v, d};
}
static inline dual dadd(dual a, dual b)
{
    return dd(a.v + b.v, a.d + b.d);
}
static inline dual dsub(dual a, dual b)
{
    return dd(a.v - b.v, a.d - b.d);
}
static inline dual dmul(dual a, dual b)
{
    return dd(a.v * b.v, a.d * b.v + a.v * b.d);
}
static inline dual dsig(dual a)
{
    double e = exp(-fabs(a.v)), s = a.v >= 0 ? 1 / (1 + e) : e / (1 + e);
    return dd(s, s * (1 - s) * a.d);
}
static inline dual dtanh(dual a)
{
    double t = tanh(a.v);
    return dd(t, (1 - t * t) * a.d);
}
static inline dual done_minus(dual a)
{
    return dd(1 - a.v, -a.d);
}

typedef enum rnn_cell { CELL_RNN, CELL_GRU, CELL_LSTM } rnn_cell;

typedef struct rnn_dims {
    rnn_cell cell;
    int gates;           /* 1, 3, 4 */
    int dirs;            /* 1 or 2 */
    bool reverse;        /* direction "reverse" (one direction) */
    bool batch_first;    /* layout 1 */
    bool lbr;            /* GRU linear_before_reset */
    int64_t T, B, I, H;
} rnn_dims;

static rnn_cell cell_of(const cs_op_call *c)
{
    return strcmp(c->node->op_type, "LSTM") == 0 ? CELL_LSTM : strcmp(c->node->op_type, "GRU") == 0 ? CELL_GRU
                                                                                                 : CELL_RNN;
}

/* The default activations of each cell, in ONNX's spelling. */
static cs_status check_activations(const cs_op_call *c, rnn_cell cell, int dirs, cs_err *err)
{
    static const char *const defaults[3][3] = {{"tanh"}, {"sigmoid", "tanh"}, {"sigmoid", "tanh", "tanh"}};
    const int per = cell == CELL_RNN ? 1 : cell == CELL_GRU ? 2 : 3;
    const cs_attr *a = cs_node_attr(c->node, "activations");
    if (a && a->type == CS_ATTR_STRINGS && a->n > 0) {
        if (a->n != per * dirs)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "%d activations for %d directions", a->n, dirs);
        /* the strings are stored one after another, NUL-terminated */
        const char *s = a->s;
        for (int k = 0; s && k < a->n; k++, s += strlen(s) + 1)
            if (strcasecmp(s, defaults[cell][k % per]) != 0)
                return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "activation '%s' (only the defaults run)", s);
    }
    if (cs_node_attr(c->node, "clip"))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "the clip attribute is not supported");
    if (cs_node_attr_int(c->node, "input_forget", 0))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input_forget is not supported");
    return CS_OK;
}

static const cs_tensor *opt_in(const cs_op_call *c, int i)
{
    return i < c->n_in && c->in[i] && cs_tensor_numel(c->in[i]) > 0 ? c->in[i] : NULL;
}

static cs_status rnn_dims_of(const cs_op_call *c, rnn_dims *d, cs_err *err)
{
    memset(d, 0, sizeof *d);
    d->cell = cell_of(c);
    d->gates = d->cell == CELL_RNN ? 1 : d->cell == CELL_GRU ? 3 : 4;
    if (c->n_in < 3 || !c->in[0] || !c->in[1] || !c->in[2])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects X, W and R");
    for (int i = 0; i < c->n_in; i++) {
        if (i == 4 || !c->in[i])
            continue;
        cs_status st = cs_op_need_float(c, i, err);
        if (st || (st = cs_op_same_dtype(c, 0, i, err)))
            return st;
    }
    const char *dir = cs_node_attr_string(c->node, "direction", "forward");
    d->dirs = strcmp(dir, "bidirectional") == 0 ? 2 : 1;
    d->reverse = strcmp(dir, "reverse") == 0;
    if (d->dirs == 1 && !d->reverse && strcmp(dir, "forward") != 0)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "direction '%s'", dir);
    d->batch_first = cs_node_attr_int(c->node, "layout", 0) != 0;
    d->lbr = cs_node_attr_int(c->node, "linear_before_reset", 0) != 0;
    cs_status st = check_activations(c, d->cell, d->dirs, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0], *w = c->in[1], *r = c->in[2];
    if (x->ndim != 3 || w->ndim != 3 || r->ndim != 3)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "X, W and R must have rank 3");
    d->T = x->dims[d->batch_first ? 1 : 0];
    d->B = x->dims[d->batch_first ? 0 : 1];
    d->I = x->dims[2];
    d->H = cs_node_attr_int(c->node, "hidden_size", r->dims[2]);
    int64_t G = d->gates, H = d->H;
    if (w->dims[0] != d->dirs || w->dims[1] != G * H || w->dims[2] != d->I || r->dims[0] != d->dirs ||
        r->dims[1] != G * H || r->dims[2] != H)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "W or R does not fit %d directions, %lld gates of %lld, input %lld",
                          d->dirs, (long long)G, (long long)H, (long long)d->I);
    const cs_tensor *b = opt_in(c, 3), *h0 = opt_in(c, 5), *c0 = d->cell == CELL_LSTM ? opt_in(c, 6) : NULL;
    const cs_tensor *p = d->cell == CELL_LSTM ? opt_in(c, 7) : NULL;
    if (b && cs_tensor_numel(b) != d->dirs * 2 * G * H)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "B has %lld values", (long long)cs_tensor_numel(b));
    if ((h0 && cs_tensor_numel(h0) != d->dirs * d->B * H) || (c0 && cs_tensor_numel(c0) != d->dirs * d->B * H))
        return cs_op_fail(c, err, CS_ERR_SHAPE, "initial state of the wrong size");
    if (p && cs_tensor_numel(p) != d->dirs * 3 * H)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "P has %lld values", (long long)cs_tensor_numel(p));
    const cs_tensor *lens = opt_in(c, 4);
    for (int64_t k = 0; lens && k < cs_tensor_numel(lens); k++)
        if (!lens->data || cs_tensor_get_i64(lens, k) != d->T)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "sequence_lens shorter than the sequence");
    return CS_OK;
}

/* Scratch, in duals: per sequence the states of every step (the gates,
 * the cell and the hidden state); the work vectors (the forward's x_t and
 * two gate vectors, the backward's gradient carries); the values a step
 * hook receives (x_t, h_{t-1}, r h_{t-1}, the gate gradients). */
static int64_t rnn_states_duals(const rnn_dims *d)
{
    return (d->T + 1) * (int64_t)(d->gates + 2) * d->H;
}
static int64_t rnn_work_duals(const rnn_dims *d)
{
    return d->I + 8 * d->H * d->gates + 16;
}
static size_t rnn_scratch(const rnn_dims *d)
{
    int64_t hook = d->I + 2 * d->H + d->gates * d->H;
    return (size_t)(rnn_states_duals(d) + rnn_work_duals(d) + hook) * sizeof(dual);
}

static cs_status rnn_infer(cs_op_call *c, cs_err *err)
{
    rnn_dims d;
    cs_status st = rnn_dims_of(c, &d, err);
    if (st)
        return st;
    cs_dtype dt = c->in[0]->dtype;
    int64_t ydims[4] = {d.T, d.dirs, d.B, d.H}, yb[4] = {d.B, d.T, d.dirs, d.H};
    int64_t hdims[3] = {d.dirs, d.B, d.H}, hb[3] = {d.B, d.dirs, d.H};
    for (int k = 0; k < c->n_out; k++) {
        if (!c->out[k])
            continue;
        if (k == 0)
            cs_tensor_set_shape(c->out[k], dt, 4, d.batch_first ? yb : ydims);
        else if (k == 1 || (k == 2 && d.cell == CELL_LSTM))
            cs_tensor_set_shape(c->out[k], dt, 3, d.batch_first ? hb : hdims);
        else
            return cs_op_fail(c, err, CS_ERR_FORMAT, "has %d outputs", c->n_out);
    }
    c->scratch_bytes = c->ad_scratch_bytes = rnn_scratch(&d);
    return CS_OK;
}

/* ---- element access (value from the tensor, tangent from its tangent) ---- */

static double tv(const cs_tensor *t, int64_t i)
{
    return !t ? 0 : t->dtype == CS_DT_DOUBLE ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

static void tadd(cs_tensor *t, int64_t i, double v)
{
    if (!t)
        return;
    if (t->dtype == CS_DT_DOUBLE)
        ((double *)t->data)[i] += v;
    else
        ((float *)t->data)[i] += (float)v;
}

static void tset(cs_tensor *t, int64_t i, double v)
{
    if (!t)
        return;
    if (t->dtype == CS_DT_DOUBLE)
        ((double *)t->data)[i] = v;
    else
        ((float *)t->data)[i] = (float)v;
}

typedef enum rnn_rule { RNN_FORWARD, RNN_JVP, RNN_VJP, RNN_ROP } rnn_rule;

typedef struct rnn_run {
    const cs_op_call *c;
    const cs_op_ad *a;
    rnn_rule rule;
    rnn_dims d;
    const cs_tensor *in[8], *tin[8]; /* inputs and (jvp, rop) their tangents */
    cs_rnn_step_fn step;             /* vjp: called at each step of the backward, or NULL */
    void *step_ctx;
    double *step_buf;                /* the values handed to step */
} rnn_run;

static dual in_at(const rnn_run *r, int k, int64_t i)
{
    return dd(tv(r->in[k], i), tv(r->tin[k], i));
}

/* Offsets of X[t, b, :] and of the hidden-size outputs. */
static int64_t x_off(const rnn_dims *d, int64_t t, int64_t b)
{
    return (d->batch_first ? b * d->T + t : t * d->B + b) * d->I;
}
static int64_t y_off(const rnn_dims *d, int64_t t, int dir, int64_t b)
{
    return (d->batch_first ? (b * d->T + t) * d->dirs + dir : (t * d->dirs + dir) * d->B + b) * d->H;
}
static int64_t h_off(const rnn_dims *d, int dir, int64_t b)
{
    return (d->batch_first ? b * d->dirs + dir : dir * d->B + b) * d->H;
}

/* pre[j] = sum_k M[row j][k] v[k] for the dual rows of input m (W or R)
 * in direction dir, gate rows g0 .. g0 + n. */
static void dual_matvec(const rnn_run *r, int m, int dir, int64_t g0, int64_t n, int64_t K, const dual *v, dual *out)
{
    int64_t base = (int64_t)dir * r->d.gates * r->d.H * K;
    for (int64_t j = 0; j < n; j++) {
        dual s = dd(0, 0);
        int64_t row = base + (g0 + j) * K;
        for (int64_t k = 0; k < K; k++)
            s = dadd(s, dmul(in_at(r, m, row + k), v[k]));
        out[j] = dadd(out[j], s);
    }
}

/* The bias of gate row j: Wb (first half) + Rb; `half` picks one. */
static dual bias_at(const rnn_run *r, int dir, int64_t j, int half)
{
    int64_t GH = r->d.gates * r->d.H, at = (int64_t)dir * 2 * GH + j;
    if (!r->in[3])
        return dd(0, 0);
    return half == 0 ? in_at(r, 3, at) : half == 1 ? in_at(r, 3, at + GH) : dadd(in_at(r, 3, at), in_at(r, 3, at + GH));
}

/* The step hook's view of step t (values only): x_t, h_{t-1}, r h_{t-1}
 * and the gate pre-activations' gradients, copied out of the duals. */
static void call_step(const rnn_run *r, int dir, int64_t b, int64_t t, const dual *hp, const dual *rh,
                      const dual *gpre)
{
    const rnn_dims *d = &r->d;
    int64_t H = d->H, GH = d->gates * d->H;
    double *x = r->step_buf, *h = x + d->I, *rhv = h + H, *g = rhv + H;
    for (int64_t k = 0; k < d->I; k++)
        x[k] = tv(r->in[0], x_off(d, t, b) + k);
    for (int64_t k = 0; k < H; k++) {
        h[k] = hp[k].v;
        rhv[k] = rh ? rh[k].v : 0;
    }
    for (int64_t j = 0; j < GH; j++)
        g[j] = gpre[j].v;
    cs_rnn_step s = {.dir = dir, .b = b, .t = t, .x = x, .h_prev = h, .rh_prev = rh ? rhv : NULL, .gpre = g};
    r->step(r->step_ctx, &s);
}

/* One sequence (direction dir, batch element b): the forward through time
 * into st (per step: gates, cell, hidden; step 0 the initial states), the
 * outputs, and for the vjp / rop the backward. */
static void rnn_sequence(rnn_run *r, int dir, int64_t b, dual *st, dual *work)
{
    const rnn_dims *d = &r->d;
    const int64_t H = d->H, G = d->gates, stride = (G + 2) * H;
    const bool backwards = d->reverse || dir == 1;
    /* st[s]: the state after s steps: [gates G H][cell H][hidden H] */
    dual *h0 = st + G * H + H, *c0 = st + G * H;
    for (int64_t j = 0; j < H; j++) {
        h0[j] = r->in[5] ? in_at(r, 5, h_off(d, dir, b) + j) : dd(0, 0);
        c0[j] = d->cell == CELL_LSTM && r->in[6] ? in_at(r, 6, h_off(d, dir, b) + j) : dd(0, 0);
    }
    dual *xv = work, *pre = xv + d->I, *aux = pre + G * H; /* aux: GRU's R h part */
    for (int64_t s = 1; s <= d->T; s++) {
        int64_t t = backwards ? d->T - s : s - 1;
        dual *prev = st + (s - 1) * stride, *cur = st + s * stride;
        dual *hp = prev + G * H + H, *cp = prev + G * H, *gate = cur, *cc = cur + G * H, *hc = cur + G * H + H;
        for (int64_t k = 0; k < d->I; k++)
            xv[k] = in_at(r, 0, x_off(d, t, b) + k);
        for (int64_t j = 0; j < G * H; j++)
            pre[j] = aux[j] = dd(0, 0);
        dual_matvec(r, 1, dir, 0, G * H, d->I, xv, pre);
        if (d->cell == CELL_GRU) {
            dual_matvec(r, 2, dir, 0, 2 * H, H, hp, pre); /* z, r */
            for (int64_t j = 0; j < 2 * H; j++)
                pre[j] = dadd(pre[j], bias_at(r, dir, j, 2));
            for (int64_t j = 0; j < H; j++) {
                gate[j] = dsig(pre[j]);         /* z */
                gate[H + j] = dsig(pre[H + j]); /* r */
            }
            dual *rh = aux + H; /* r h (lbr 0) */
            for (int64_t j = 0; j < H; j++)
                rh[j] = dmul(gate[H + j], hp[j]);
            dual_matvec(r, 2, dir, 2 * H, H, H, d->lbr ? hp : rh, aux); /* aux[0..H) = Rh (.) */
            for (int64_t j = 0; j < H; j++) {
                dual q = dadd(aux[j], bias_at(r, dir, 2 * H + j, 1));
                dual n = dtanh(dadd(dadd(pre[2 * H + j], bias_at(r, dir, 2 * H + j, 0)),
                                    d->lbr ? dmul(gate[H + j], q) : q));
                gate[2 * H + j] = n;
                hc[j] = dadd(dmul(done_minus(gate[j]), n), dmul(gate[j], hp[j]));
            }
        } else {
            dual_matvec(r, 2, dir, 0, G * H, H, hp, pre);
            for (int64_t j = 0; j < G * H; j++)
                pre[j] = dadd(pre[j], bias_at(r, dir, j, 2));
            if (d->cell == CELL_RNN) {
                for (int64_t j = 0; j < H; j++)
                    hc[j] = gate[j] = dtanh(pre[j]);
            } else {
                for (int64_t j = 0; j < H; j++) {
                    int64_t pb = (int64_t)dir * 3 * H;
                    dual pi = r->in[7] ? in_at(r, 7, pb + j) : dd(0, 0), po = r->in[7] ? in_at(r, 7, pb + H + j) : dd(0, 0),
                         pf = r->in[7] ? in_at(r, 7, pb + 2 * H + j) : dd(0, 0);
                    dual i = dsig(dadd(pre[j], dmul(pi, cp[j])));
                    dual f = dsig(dadd(pre[2 * H + j], dmul(pf, cp[j])));
                    dual g = dtanh(pre[3 * H + j]);
                    cc[j] = dadd(dmul(f, cp[j]), dmul(i, g));
                    dual o = dsig(dadd(pre[H + j], dmul(po, cc[j])));
                    gate[j] = i, gate[H + j] = o, gate[2 * H + j] = f, gate[3 * H + j] = g;
                    hc[j] = dmul(o, dtanh(cc[j]));
                }
            }
        }
        if (r->rule == RNN_FORWARD || r->rule == RNN_JVP) {
            cs_tensor *Y = r->rule == RNN_FORWARD ? r->c->out[0] : r->a->tout[0];
            for (int64_t j = 0; j < H && Y; j++)
                tset(Y, y_off(d, t, dir, b) + j, r->rule == RNN_FORWARD ? hc[j].v : hc[j].d);
        }
    }
    dual *last = st + d->T * stride;
    if (r->rule == RNN_FORWARD || r->rule == RNN_JVP) {
        for (int k = 1; k <= 2; k++) {
            cs_tensor *out = k < r->c->n_out ? (r->rule == RNN_FORWARD ? r->c->out[k] : r->a->tout[k]) : NULL;
            const dual *src = k == 1 ? last + G * H + H : last + G * H;
            for (int64_t j = 0; j < H && out; j++)
                tset(out, h_off(d, dir, b) + j, r->rule == RNN_FORWARD ? src[j].v : src[j].d);
        }
        return;
    }

    /* ---- backward through time, on duals ---- */
    const bool rop = r->rule == RNN_ROP;
    dual *gh = work, *gc = gh + H, *gpre = gc + H, *ghp = gpre + G * H, *tmp = ghp + H;
    for (int64_t j = 0; j < H; j++) {
        gh[j] = dd(r->c->n_out > 1 ? tv(r->a->gout[1], h_off(d, dir, b) + j) : 0, 0);
        gc[j] = dd(r->c->n_out > 2 && d->cell == CELL_LSTM ? tv(r->a->gout[2], h_off(d, dir, b) + j) : 0, 0);
    }
    /* what a dual gradient adds to input k: its value (vjp) or tangent (rop) */
#define GRAD_ADD(k, idx, dv) tadd(r->a->gin[k], (idx), rop ? (dv).d : (dv).v)
    for (int64_t step = d->T; step >= 1; step--) {
        int64_t t = backwards ? d->T - step : step - 1;
        dual *prev = st + (step - 1) * stride, *cur = st + step * stride;
        dual *hp = prev + G * H + H, *cp = prev + G * H, *gate = cur, *cc = cur + G * H;
        const dual *rh_used = NULL; /* GRU (linear_before_reset 0): the r h that Rh multiplied */
        for (int64_t j = 0; j < H; j++)
            gh[j] = dadd(gh[j], dd(r->a->gout[0] ? tv(r->a->gout[0], y_off(d, t, dir, b) + j) : 0, 0));
        for (int64_t j = 0; j < H; j++)
            ghp[j] = dd(0, 0);
        for (int64_t j = 0; j < G * H; j++)
            gpre[j] = dd(0, 0);
        if (d->cell == CELL_RNN) {
            for (int64_t j = 0; j < H; j++)
                gpre[j] = dmul(gh[j], done_minus(dmul(gate[j], gate[j])));
        } else if (d->cell == CELL_LSTM) {
            int64_t pb = (int64_t)dir * 3 * H;
            for (int64_t j = 0; j < H; j++) {
                dual i = gate[j], o = gate[H + j], f = gate[2 * H + j], g = gate[3 * H + j];
                dual pi = r->in[7] ? in_at(r, 7, pb + j) : dd(0, 0), po = r->in[7] ? in_at(r, 7, pb + H + j) : dd(0, 0),
                     pf = r->in[7] ? in_at(r, 7, pb + 2 * H + j) : dd(0, 0);
                dual tc = dtanh(cc[j]);
                dual gpo = dmul(dmul(gh[j], tc), dmul(o, done_minus(o)));
                dual gcj = dadd(dadd(gc[j], dmul(dmul(gh[j], o), done_minus(dmul(tc, tc)))), dmul(gpo, po));
                dual gpi = dmul(dmul(gcj, g), dmul(i, done_minus(i)));
                dual gpf = dmul(dmul(gcj, cp[j]), dmul(f, done_minus(f)));
                dual gpg = dmul(dmul(gcj, i), done_minus(dmul(g, g)));
                gpre[j] = gpi, gpre[H + j] = gpo, gpre[2 * H + j] = gpf, gpre[3 * H + j] = gpg;
                gc[j] = dadd(dadd(dmul(gcj, f), dmul(gpi, pi)), dmul(gpf, pf)); /* to the previous cell */
                if (r->in[7]) {
                    GRAD_ADD(7, pb + j, dmul(gpi, cp[j]));
                    GRAD_ADD(7, pb + H + j, dmul(gpo, cc[j]));
                    GRAD_ADD(7, pb + 2 * H + j, dmul(gpf, cp[j]));
                }
            }
        } else { /* GRU */
            /* q = Rh (.) + Rbh, recomputed (lbr: Rh h; else Rh (r h)) */
            dual *q = tmp, *rh = tmp + H;
            for (int64_t j = 0; j < H; j++) {
                q[j] = dd(0, 0);
                rh[j] = dmul(gate[H + j], hp[j]);
            }
            dual_matvec(r, 2, dir, 2 * H, H, H, d->lbr ? hp : rh, q);
            for (int64_t j = 0; j < H; j++)
                q[j] = dadd(q[j], bias_at(r, dir, 2 * H + j, 1));
            dual *gq = rh + H; /* gradient at q (the Rh product's output) */
            for (int64_t j = 0; j < H; j++) {
                dual z = gate[j], rr = gate[H + j], n = gate[2 * H + j];
                dual gz = dmul(gh[j], dsub(hp[j], n));
                dual gpn = dmul(dmul(gh[j], done_minus(z)), done_minus(dmul(n, n)));
                ghp[j] = dadd(ghp[j], dmul(gh[j], z));
                gpre[2 * H + j] = gpn;
                gq[j] = d->lbr ? dmul(gpn, rr) : gpn;
                dual gr = d->lbr ? dmul(gpn, q[j]) : dd(0, 0); /* lbr 0: from the Rh^T product below */
                gpre[j] = dmul(gz, dmul(z, done_minus(z)));
                gpre[H + j] = gr; /* completed below for lbr 0, then times r (1 - r) */
            }
            /* through Rh: its weights and bias, and the vector it multiplied */
            int64_t wb = (int64_t)dir * G * H * H;
            const dual *vin = d->lbr ? hp : rh;
            for (int64_t j = 0; j < H; j++) {
                GRAD_ADD(3, (int64_t)dir * 2 * G * H + G * H + 2 * H + j, gq[j]);
                for (int64_t k = 0; k < H; k++) {
                    int64_t at = wb + (2 * H + j) * H + k;
                    GRAD_ADD(2, at, dmul(gq[j], vin[k]));
                }
            }
            for (int64_t k = 0; k < H; k++) {
                dual s = dd(0, 0);
                for (int64_t j = 0; j < H; j++)
                    s = dadd(s, dmul(in_at(r, 2, wb + (2 * H + j) * H + k), gq[j]));
                if (d->lbr) {
                    ghp[k] = dadd(ghp[k], s);
                } else {
                    gpre[H + k] = dadd(gpre[H + k], dmul(s, hp[k])); /* d(r h)/dr */
                    ghp[k] = dadd(ghp[k], dmul(s, gate[H + k]));      /* d(r h)/dh */
                }
            }
            for (int64_t j = 0; j < H; j++)
                gpre[H + j] = dmul(gpre[H + j], dmul(gate[H + j], done_minus(gate[H + j])));
            rh_used = d->lbr ? NULL : rh;
        }
        if (r->step)
            call_step(r, dir, b, t, hp, rh_used, gpre);
        /* the gate pre-activations' gradient into W, R, the biases, x and h */
        const int64_t wbase = (int64_t)dir * G * H * d->I, rbase = (int64_t)dir * G * H * H;
        const int64_t bbase = (int64_t)dir * 2 * G * H;
        const int64_t r_rows = d->cell == CELL_GRU ? 2 * H : G * H; /* GRU's Rh handled above */
        for (int64_t k = 0; k < d->I; k++) {
            dual x = in_at(r, 0, x_off(d, t, b) + k), s = dd(0, 0);
            for (int64_t j = 0; j < G * H; j++) {
                GRAD_ADD(1, wbase + j * d->I + k, dmul(gpre[j], x));
                s = dadd(s, dmul(in_at(r, 1, wbase + j * d->I + k), gpre[j]));
            }
            GRAD_ADD(0, x_off(d, t, b) + k, s);
        }
        for (int64_t j = 0; j < G * H; j++) {
            GRAD_ADD(3, bbase + j, gpre[j]);
            if (j < r_rows)
                GRAD_ADD(3, bbase + G * H + j, gpre[j]);
        }
        for (int64_t k = 0; k < H; k++) {
            dual s = dd(0, 0);
            for (int64_t j = 0; j < r_rows; j++) {
                GRAD_ADD(2, rbase + j * H + k, dmul(gpre[j], hp[k]));
                s = dadd(s, dmul(in_at(r, 2, rbase + j * H + k), gpre[j]));
            }
            gh[k] = dadd(ghp[k], s); /* the previous step's hidden-state gradient */
        }
    }
    for (int64_t j = 0; j < H; j++) {
        GRAD_ADD(5, h_off(d, dir, b) + j, gh[j]);
        if (d->cell == CELL_LSTM)
            GRAD_ADD(6, h_off(d, dir, b) + j, gc[j]);
    }
#undef GRAD_ADD
}

/* The run of one rule over c's inputs: dimensions checked, the inputs (and
 * for jvp / rop their tangents) gathered.  The gradients go through gin[],
 * a copy of a->gin that is NULL past the node's inputs, since the
 * backward writes the initial states' (slots 5, 6) whether or not the
 * node has them. */
static cs_status rnn_setup(rnn_run *r, cs_op_ad *ad8, cs_tensor **gin8, cs_err *err)
{
    cs_status st = rnn_dims_of(r->c, &r->d, err);
    if (st)
        return st;
    const cs_op_call *c = r->c;
    const cs_op_ad *a = r->a;
    for (int k = 0; k < 8; k++) {
        r->in[k] = k == 4 ? NULL : opt_in(c, k);
        r->tin[k] = r->in[k] && (r->rule == RNN_JVP || r->rule == RNN_ROP) && a->tin[k] ? a->tin[k] : NULL;
        gin8[k] = a && a->gin && k < c->n_in ? a->gin[k] : NULL;
    }
    if (a) {
        *ad8 = *a;
        ad8->gin = gin8;
        r->a = ad8;
    }
    return CS_OK;
}

static cs_status rnn_apply(cs_op_call *c, const cs_op_ad *a, rnn_rule rule, cs_err *err)
{
    rnn_run r = {.c = c, .a = a, .rule = rule};
    cs_op_ad ad8;
    cs_tensor *gin8[8];
    cs_status st = rnn_setup(&r, &ad8, gin8, err);
    if (st)
        return st;
    if (rule == RNN_JVP)
        for (int k = 0; k < c->n_out; k++)
            if (a->tout[k])
                memset(a->tout[k]->data, 0, cs_tensor_bytes(a->tout[k]));
    dual *stbuf = c->scratch;
    dual *work = stbuf + rnn_states_duals(&r.d);
    for (int dir = 0; dir < r.d.dirs; dir++)
        for (int64_t b = 0; b < r.d.B; b++)
            rnn_sequence(&r, dir, b, stbuf, work);
    return CS_OK;
}

size_t cs_rnn_sample_scratch_bytes(const cs_node *node, cs_tensor *const *in, int n_in)
{
    cs_op_call c = {.node = node, .n_in = n_in, .in = (cs_tensor **)in};
    rnn_dims d;
    cs_err quiet = {0};
    return rnn_dims_of(&c, &d, &quiet) ? 0 : rnn_scratch(&d);
}

/* The vjp's loop body for one batch element: the sequences of the batch
 * are independent, so this is exactly element b's share of rnn_vjp; with
 * a step hook, each step's values go to it as well. */
static cs_status sample_backward(const cs_node *node, cs_tensor *const *in, int n_in, cs_tensor *const *gout,
                                 int n_out, int64_t b, cs_tensor *const *gin, cs_rnn_step_fn fn, void *ctx,
                                 void *scratch, cs_err *err)
{
    cs_tensor *no_grads[8] = {0}, *no_gout[3] = {0};
    if (n_out > 3)
        n_out = 3;
    cs_op_call c = {.node = node, .n_in = n_in, .in = (cs_tensor **)in, .n_out = n_out, .scratch = scratch};
    cs_op_ad a = {.gout = gout ? (cs_tensor **)gout : no_gout, .gin = gin ? (cs_tensor **)gin : no_grads};
    rnn_run r = {.c = &c, .a = &a, .rule = RNN_VJP, .step = fn, .step_ctx = ctx};
    cs_op_ad ad8;
    cs_tensor *gin8[8];
    cs_status st = rnn_setup(&r, &ad8, gin8, err);
    if (st)
        return st;
    if (b < 0 || b >= r.d.B)
        return cs_op_fail(&c, err, CS_ERR_RUNTIME, "no batch element %lld of %lld", (long long)b, (long long)r.d.B);
    dual *stbuf = scratch;
    dual *work = stbuf + rnn_states_duals(&r.d);
    r.step_buf = (double *)(work + rnn_work_duals(&r.d));
    for (int dir = 0; dir < r.d.dirs; dir++)
        rnn_sequence(&r, dir, b, stbuf, work);
    return CS_OK;
}

cs_status cs_rnn_sample_vjp(const cs_node *node, cs_tensor *const *in, int n_in, cs_tensor *const *gout, int n_out,
                            int64_t b, cs_tensor *const *gin, void *scratch, cs_err *err)
{
    return sample_backward(node, in, n_in, gout, n_out, b, gin, NULL, NULL, scratch, err);
}

cs_status cs_rnn_sample_steps(const cs_node *node, cs_tensor *const *in, int n_in, cs_tensor *const *gout,
                              int n_out, int64_t b, cs_rnn_step_fn fn, void *ctx, void *scratch, cs_err *err)
{
    return sample_backward(node, in, n_in, gout, n_out, b, NULL, fn, ctx, scratch, err);
}

static cs_status rnn_forward(cs_op_call *c, cs_err *err)
{
    return rnn_apply(c, NULL, RNN_FORWARD, err);
}

static bool any_out(const cs_op_call *c, cs_tensor *const *v)
{
    for (int k = 0; k < c->n_out; k++)
        if (v[k])
            return true;
    return false;
}

static cs_status rnn_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return any_out(c, a->gout) ? rnn_apply(c, a, RNN_VJP, err) : CS_OK;
}

static cs_status rnn_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return any_out(c, a->tout) ? rnn_apply(c, a, RNN_JVP, err) : CS_OK;
}

static cs_status rnn_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return any_out(c, a->gout) ? rnn_apply(c, a, RNN_ROP, err) : CS_OK;
}

#define RNN_OP(NAME, MIN_OPSET)                                                                      \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = MIN_OPSET, .infer = rnn_infer,       \
                                    .forward = rnn_forward, .vjp = rnn_vjp, .jvp = rnn_jvp,          \
                                    .rop = rnn_rop};
/* Opset 7 removed output_sequence; 14 added layout. */
RNN_OP(RNN, 7)
RNN_OP(GRU, 7)
RNN_OP(LSTM, 7)
