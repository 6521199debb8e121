/* RNN, GRU and LSTM layers (interp/ops/recurrent.c has the cells): the
 * weights W [dirs, G H, I] (slot 1), R [dirs, G H, H] (slot 2), the biases
 * B [dirs, 2 G H] = [Wb | Rb] (slot 3) and LSTM's peepholes P [dirs, 3 H]
 * (slot 7), those of them that are trainable initializers, in that order;
 * G is 1, 3 or 4 gates.
 *
 * The initial states initial_h / initial_c (slots 5, 6) are never
 * parameters, even as initializers: they are [dirs, batch, H], one state
 * per batch element, so an initializer there fixes the batch size and is
 * not a quantity of the model (exporters write zeros, or compute them from
 * the input).  Gradients flow through them as through any input.
 *
 * Per-sample gradients: the sequences of a batch are independent, so
 * sample n's gradient is the op's own backward through time run on batch
 * element n alone with element n's output gradients (cs_rnn_sample_vjp):
 * the recurrence is not written twice.  Every output of the node (Y, Y_h,
 * Y_c) that has a gradient seeds it.
 *
 * Units (the unit-wise representation): one per gate row (direction d,
 * row j of the G H), its slots [W[d, j, :] | R[d, j, :] | Wb[d, j] |
 * Rb[d, j] | P[d, j]] (I + H + 2 slots, + 1 for LSTM, whose peephole of
 * gate row j exists for the i, o, f rows: P is stored i, o, f like the
 * first three gate blocks); a slot whose tensor is not a parameter is
 * absent.  A gate row is one pre-activation's incoming weights, as a
 * dense layer's output row is.
 *
 * K-FAC (CS_KFAC_SEQUENCE; doc/design.md §2.4, the expand setting of
 * Eschenhagen et al. 2023 over the T steps): each gate block is a linear map
 * of abar_t = [x_t ; h_{t-1} ; 1] to its pre-activations s_t = W x_t +
 * R h_{t-1} + Wb + Rb, shared over t, so
 *   A = (1/(N T)) sum_{n,t} abar abar^T  [I + H + 1],
 *   G = (1/N) sum_n sum_t E[delta_t delta_t^T],  delta_t = dl/ds_t.
 * RNN and LSTM: one group per direction, dG = G H (every gate block reads
 * the same abar).  GRU with linear_before_reset 0: its h block multiplies
 * r_t h_{t-1}, not h_{t-1}, so the groups are (direction, gate block), dG
 * = H, each with the abar its block actually multiplies.  GRU with
 * linear_before_reset 1 (n = tanh(Wh x + Wbh + r (Rh h + Rbh))) is not one
 * linear map of one input with one output gradient: no Kronecker form;
 * neither has an LSTM whose peepholes P are parameters (P c is a diagonal
 * map of the cell).  Index map: W[d, j, k] is (group, unit, k), R[d, j, k]
 * is (group, unit, I + k), and both biases Wb[d, j] and Rb[d, j] are
 * (group, unit, I + H): they only enter through their sum, their
 * gradients are equal, and so are their entries of the K-FAC block (as of
 * the exact one).  A layer whose W or R is not a parameter has no K-FAC
 * form. */
#include "interp/layers/rules.h"

#include <stdlib.h>
#include <string.h>

#include "interp/ops/recurrent.h"

enum { RNN_SLOTS = 8 };

static int gates_of(const cs_node *n)
{
    return strcmp(n->op_type, "LSTM") == 0 ? 4 : strcmp(n->op_type, "GRU") == 0 ? 3 : 1;
}

/* The layer's parameter in node slot s, or -1. */
static int param_in_slot(const cs_graph *g, const cs_layer *L, int s)
{
    const cs_node *n = &g->nodes[L->node];
    for (int q = 0; q < L->n_params; q++)
        if (s < n->n_inputs && n->inputs[s] == g->params[L->first_param + q].value)
            return q;
    return -1;
}

/* Offset of parameter q within the layer. */
static int64_t param_col(const cs_graph *g, const cs_layer *L, int q)
{
    return g->params[L->first_param + q].offset - g->params[L->first_param].offset;
}

static cs_status recurrent_unit_layout(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    const cs_node *n = &g->nodes[L->node];
    int qw = param_in_slot(g, L, 1), qr = param_in_slot(g, L, 2), qb = param_in_slot(g, L, 3);
    int qp = param_in_slot(g, L, 7);
    /* Gate rows need W and R as parameters (their widths place the slots). */
    if (qw < 0 || qr < 0)
        return CS_OK;
    const cs_tensor *w = &g->values[g->params[L->first_param + qw].value].init;
    const cs_tensor *r = &g->values[g->params[L->first_param + qr].value].init;
    int64_t G = gates_of(n);
    if (w->ndim != 3 || r->ndim != 3 || r->dims[1] % G || w->dims[1] != r->dims[1] || w->dims[0] != r->dims[0])
        return CS_OK;
    int64_t dirs = w->dims[0], GH = w->dims[1], H = GH / G, I = w->dims[2];
    if (r->dims[2] != H)
        return CS_OK;
    bool lstm = G == 4;
    int64_t d = I + H + 2 + (lstm ? 1 : 0);
    out->n_units = dirs * GH;
    out->unit_d = d;
    out->unit_idx = malloc(sizeof(int64_t) * (size_t)(out->n_units * d + 1));
    if (!out->unit_idx)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory: %lld unit-wise slots of layer '%s'",
                       (long long)(out->n_units * d), L->name);
    for (int64_t i = 0; i < out->n_units * d; i++)
        out->unit_idx[i] = -1;
    int64_t cw = param_col(g, L, qw), cr = param_col(g, L, qr);
    for (int64_t u = 0; u < dirs * GH; u++) {
        int64_t *slot = out->unit_idx + u * d;
        for (int64_t k = 0; k < I; k++)
            slot[k] = cw + u * I + k;
        for (int64_t k = 0; k < H; k++)
            slot[I + k] = cr + u * H + k;
    }
    if (qb >= 0 && cs_tensor_numel(&g->values[g->params[L->first_param + qb].value].init) == dirs * 2 * GH) {
        int64_t cb = param_col(g, L, qb);
        for (int64_t dir = 0; dir < dirs; dir++)
            for (int64_t j = 0; j < GH; j++) {
                out->unit_idx[(dir * GH + j) * d + I + H] = cb + dir * 2 * GH + j;
                out->unit_idx[(dir * GH + j) * d + I + H + 1] = cb + dir * 2 * GH + GH + j;
            }
    }
    if (lstm && qp >= 0 && cs_tensor_numel(&g->values[g->params[L->first_param + qp].value].init) == dirs * 3 * H) {
        int64_t cp = param_col(g, L, qp);
        for (int64_t dir = 0; dir < dirs; dir++)
            for (int64_t j = 0; j < 3 * H; j++)
                out->unit_idx[(dir * GH + j) * d + I + H + 2] = cp + dir * 3 * H + j;
    }
    return CS_OK;
}

/* The K-FAC shape of the layer, or false when it has none (above). */
static bool kfac_shape(const cs_graph *g, const cs_layer *L, int64_t *dirs, int64_t *G, int64_t *H, int64_t *I,
                       int64_t *groups)
{
    const cs_node *n = &g->nodes[L->node];
    int qw = param_in_slot(g, L, 1), qr = param_in_slot(g, L, 2), qb = param_in_slot(g, L, 3);
    if (qw < 0 || qr < 0 || param_in_slot(g, L, 7) >= 0)
        return false;
    *G = gates_of(n);
    if (*G == 3 && cs_node_attr_int(n, "linear_before_reset", 0))
        return false;
    const cs_tensor *w = &g->values[g->params[L->first_param + qw].value].init;
    const cs_tensor *r = &g->values[g->params[L->first_param + qr].value].init;
    if (w->ndim != 3 || r->ndim != 3 || w->dims[0] != r->dims[0] || w->dims[1] != r->dims[1] || r->dims[1] % *G)
        return false;
    *dirs = w->dims[0];
    *H = r->dims[1] / *G;
    *I = w->dims[2];
    if (r->dims[2] != *H ||
        (qb >= 0 && cs_tensor_numel(&g->values[g->params[L->first_param + qb].value].init) != *dirs * 2 * *G * *H))
        return false;
    *groups = *G == 3 ? *dirs * 3 : *dirs;
    return true;
}

static cs_status recurrent_kfac_layout(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    int64_t dirs, G, H, I, groups;
    if (!kfac_shape(g, L, &dirs, &G, &H, &I, &groups))
        return CS_OK;
    const int64_t GH = G * H, dG = G == 3 ? H : GH;
    out->kron = malloc(sizeof(int64_t) * (size_t)(3 * out->W + 1));
    if (!out->kron)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory: %lld index entries for the layout of layer '%s'",
                       (long long)(3 * out->W), L->name);
    for (int64_t i = 0; i < 3 * out->W; i++)
        out->kron[i] = -1;
    /* gate row u = dir G H + j: group and unit of its pre-activation */
#define KRON_SET(p, u, feature)                                                                              do {                                                                                                         int64_t *k_ = out->kron + 3 * (p);                                                                       k_[0] = G == 3 ? (u) / H : (u) / GH;                                                                     k_[1] = G == 3 ? (u) % H : (u) % GH;                                                                     k_[2] = (feature);                                                                                   } while (0)
    int qb = param_in_slot(g, L, 3);
    int64_t cw = param_col(g, L, param_in_slot(g, L, 1)), cr = param_col(g, L, param_in_slot(g, L, 2));
    for (int64_t u = 0; u < dirs * GH; u++) {
        for (int64_t k = 0; k < I; k++)
            KRON_SET(cw + u * I + k, u, k);
        for (int64_t k = 0; k < H; k++)
            KRON_SET(cr + u * H + k, u, I + k);
    }
    if (qb >= 0) {
        int64_t cb = param_col(g, L, qb);
        for (int64_t dir = 0; dir < dirs; dir++)
            for (int64_t j = 0; j < GH; j++) {
                KRON_SET(cb + dir * 2 * GH + j, dir * GH + j, I + H);      /* Wb */
                KRON_SET(cb + dir * 2 * GH + GH + j, dir * GH + j, I + H); /* Rb */
            }
    }
#undef KRON_SET
    for (int64_t i = 0; i < 3 * out->W; i++)
        if (out->kron[i] < 0) { /* a parameter outside W, R, B: no Kronecker form */
            free(out->kron);
            out->kron = NULL;
            return CS_OK;
        }
    out->groups = groups;
    out->dG = dG;
    out->fan_in = I + H;
    out->dA = I + H + (qb >= 0 ? 1 : 0);
    out->kfac = CS_KFAC_SEQUENCE;
    return CS_OK;
}

/* The node's inputs and output gradients as the op's rules see them. */
static int node_inputs(const cs_ad *ad, const cs_node *n, cs_tensor **in)
{
    int k = 0;
    for (; k < n->n_inputs && k < RNN_SLOTS; k++)
        in[k] = n->inputs[k] >= 0 ? &ad->p->vals[n->inputs[k]] : NULL;
    return k;
}

static cs_status recurrent_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                                      int64_t width, cs_err *err)
{
    (void)cap; /* the capture's X and dY are read with the other inputs and outputs below */
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    cs_tensor *in[RNN_SLOTS] = {0}, *gout[3] = {0}, *gin[RNN_SLOTS] = {0};
    cs_tensor views[RNN_SLOTS];
    int n_in = node_inputs(ad, n, in), n_out = n->n_outputs < 3 ? n->n_outputs : 3;
    for (int j = 0; j < n_out; j++) {
        int v = n->outputs[j];
        gout[j] = v >= 0 && ad->grad[v].data ? &ad->grad[v] : NULL;
    }
    size_t need = cs_rnn_sample_scratch_bytes(n, in, n_in);
    if (!need) /* a node the operator refuses: its own message */
        return cs_rnn_sample_vjp(n, in, n_in, gout, n_out, 0, gin, NULL, err);
    if (need > ad->ps_bytes)
        return cs_fail(err, CS_ERR_RUNTIME, "layer '%s': %zu bytes of per-sample workspace planned, %zu needed",
                       L->name, ad->ps_bytes, need);
    int64_t N = in[0] ? in[0]->dims[cs_node_attr_int(n, "layout", 0) ? 0 : 1] : 0;
    for (int64_t b = 0; b < N; b++) {
        double *o = out + b * width;
        memset(o, 0, sizeof(double) * (size_t)L->numel);
        /* sample b's gradient of parameter q lands in its columns of row b */
        for (int q = 0; q < L->n_params; q++) {
            int v = g->params[L->first_param + q].value, s = cs_node_input_slot(n, v);
            if (s < 0 || s >= RNN_SLOTS)
                return cs_fail(err, CS_ERR_RUNTIME, "layer '%s': parameter %d not among the node's inputs", L->name,
                               q);
            const cs_tensor *P = &g->values[v].init;
            memset(&views[s], 0, sizeof views[s]);
            cs_tensor_set_shape(&views[s], CS_DT_DOUBLE, P->ndim, P->dims);
            views[s].data = o + param_col(g, L, q);
            gin[s] = &views[s];
        }
        cs_status st = cs_rnn_sample_vjp(n, in, n_in, gout, n_out, b, gin, ad->ps_buf, err);
        if (st)
            return st;
    }
    return CS_OK;
}

static cs_status recurrent_layout(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    cs_status st = recurrent_unit_layout(g, L, out, err);
    return st ? st : recurrent_kfac_layout(g, L, out, err);
}

/* Where a step's rows go: row b T + t of each group's block of out. */
typedef struct kfac_rows_ctx {
    const cs_layer_layout *s;
    bool grads, gru;
    int64_t T, rows, H, I;
    double *out;
} kfac_rows_ctx;

static void kfac_step_rows(void *ctx, const cs_rnn_step *st)
{
    const kfac_rows_ctx *c = ctx;
    const cs_layer_layout *s = c->s;
    int64_t d = c->grads ? s->dG : s->dA, row = st->b * c->T + st->t;
    int blocks = c->gru ? 3 : 1;
    for (int blk = 0; blk < blocks; blk++) {
        int64_t grp = (int64_t)st->dir * blocks + blk;
        double *o = c->out + (grp * c->rows + row) * d;
        if (c->grads) {
            memcpy(o, st->gpre + blk * s->dG, sizeof(double) * (size_t)s->dG);
            continue;
        }
        const double *h = blk == 2 && st->rh_prev ? st->rh_prev : st->h_prev;
        memcpy(o, st->x, sizeof(double) * (size_t)c->I);
        memcpy(o + c->I, h, sizeof(double) * (size_t)c->H);
        if (s->dA > s->fan_in)
            o[s->fan_in] = 1.0;
    }
}

static cs_status recurrent_kfac_rows(const cs_ad *ad, const cs_layer *L, const cs_layer_layout *s, bool grads,
                                     double *out, int64_t *rows, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    cs_tensor *in[RNN_SLOTS] = {0}, *gout[3] = {0};
    int n_in = node_inputs(ad, n, in), n_out = n->n_outputs < 3 ? n->n_outputs : 3;
    for (int j = 0; grads && j < n_out; j++) {
        int v = n->outputs[j];
        gout[j] = v >= 0 && ad->grad[v].data ? &ad->grad[v] : NULL;
    }
    if (s->kfac != CS_KFAC_SEQUENCE || !in[0] || in[0]->ndim != 3)
        return cs_fail(err, CS_ERR_RUNTIME, "layer '%s': no K-FAC rows", L->name);
    size_t need = cs_rnn_sample_scratch_bytes(n, in, n_in);
    if (!need || need > ad->ps_bytes)
        return cs_fail(err, CS_ERR_RUNTIME, "layer '%s': %zu bytes of workspace planned, %zu needed", L->name,
                       ad->ps_bytes, need);
    bool bf = cs_node_attr_int(n, "layout", 0) != 0;
    int64_t N = in[0]->dims[bf ? 0 : 1], T = in[0]->dims[bf ? 1 : 0];
    kfac_rows_ctx c = {.s = s, .grads = grads, .gru = gates_of(n) == 3, .T = T, .rows = N * T,
                       .H = s->fan_in - in[0]->dims[2], .I = in[0]->dims[2], .out = out};
    for (int64_t b = 0; b < N; b++) {
        cs_status st = cs_rnn_sample_steps(n, in, n_in, grads ? gout : NULL, n_out, b, kfac_step_rows, &c,
                                           ad->ps_buf, err);
        if (st)
            return st;
    }
    *rows = N * T;
    return CS_OK;
}

static size_t recurrent_per_sample_bytes(const cs_ad *ad, const cs_layer *L)
{
    const cs_node *n = &ad->g->nodes[L->node];
    cs_tensor *in[RNN_SLOTS] = {0};
    int n_in = node_inputs(ad, n, in);
    return cs_rnn_sample_scratch_bytes(n, in, n_in);
}

static const int recurrent_slots[] = {1, 2, 3, 7, -1};

#define RECURRENT_KIND(VAR, NAME, OP)                                                                     \
    const cs_layer_kind VAR = {.name = NAME, .op_type = OP, .param_slots = recurrent_slots,               \
                               .layout = recurrent_layout, .per_sample_grads = recurrent_per_sample,      \
                               .per_sample_bytes = recurrent_per_sample_bytes,                            \
                               .kfac_rows = recurrent_kfac_rows,                                          \
                               /* the op's layout attribute says where the batch is */                   \
                               .samples_any_axis = true, .prunable = true};
RECURRENT_KIND(cs_layer_rnn, "rnn", "RNN")
RECURRENT_KIND(cs_layer_gru, "gru", "GRU")
RECURRENT_KIND(cs_layer_lstm, "lstm", "LSTM")
