-- curvscope result database.
--
-- curvscope applies this file to a new database and then sets
-- PRAGMA user_version (the schema version) and PRAGMA application_id, so a
-- later build can tell its own files from other SQLite files and knows
-- which migrations a file needs.  Versions only add: a line "-- @version N"
-- starts what version N added, and an older database opened for writing
-- gets the sections it lacks, in one transaction (src/store/store.c).  The tool enables foreign keys on every
-- connection; in the sqlite3 shell run `PRAGMA foreign_keys = ON;` before
-- deleting a run, so that its results go with it.
--
-- Every result row belongs to a run.  layer_id is the position of the layer
-- in the model (see `layers`); a NULL layer_id means the whole network.
-- curvature and repr hold the names used on the command line; method says
-- how a number was obtained (exact, lanczos, slq, hutchinson, kron), so an
-- estimate is never mistaken for an exact value.  Numbers that could not be
-- computed are NULL, never NaN.
--
-- Portability: plain SQL that SQLite 3.22 and later parse (no window
-- functions, STRICT tables or generated columns), so an older sqlite3 shell
-- can still open a file written by a newer curvscope.

-- One row per invocation of `curvscope analyze` or `curvscope finetune`.
-- A run is inserted as 'running' and committed before any work, and set to
-- 'done' or 'failed' at the end; a row still 'running' after the program
-- ended marks an interrupted run whose results were never committed.
CREATE TABLE runs (
    -- AUTOINCREMENT: a deleted run's id is never handed out again, so an id
    -- quoted in notes keeps naming one run.
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT    NOT NULL CHECK (kind IN ('analyze', 'finetune', 'quantize', 'laplace', 'influence')),
    model_path     TEXT    NOT NULL,          -- as given on the command line
    model_sha256   TEXT    CHECK (model_sha256 IS NULL OR length(model_sha256) = 64),
    data           TEXT,                      -- data and label specs
    n_samples      INTEGER CHECK (n_samples IS NULL OR n_samples >= 0),
    loss           TEXT,                      -- ce | mse
    argv           TEXT,                      -- the full command line
    version        TEXT    NOT NULL,          -- curvscope version
    status         TEXT    NOT NULL DEFAULT 'running'
                           CHECK (status IN ('running', 'done', 'failed')),
    started_at     TEXT    NOT NULL,          -- UTC, ISO 8601
    finished_at    TEXT,                      -- UTC, ISO 8601
    seconds        REAL,                      -- wall time of the run
    peak_rss_bytes INTEGER,                   -- peak resident memory
    error          TEXT                       -- message of a failed run
);
CREATE INDEX runs_by_model ON runs (model_sha256, kind, status);

-- Provenance as data: the conventions a run used (loss reduction, K-FAC
-- convention and factor order, bias handling, BatchNormalization mode,
-- accumulation dtype, sample counts, seeds), so results of different runs
-- and versions can be compared knowingly.
CREATE TABLE conventions (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT    NOT NULL,
    value  TEXT,
    PRIMARY KEY (run_id, key)
);

-- The layers of the model: ONNX nodes that own trainable initializers, in
-- the order their first node appears in the file.
CREATE TABLE layers (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id INTEGER NOT NULL CHECK (layer_id >= 0),
    name     TEXT    NOT NULL,                -- ONNX node name
    op_type  TEXT    NOT NULL,                -- Gemm, Conv, MatMul, ...
    n_params INTEGER NOT NULL CHECK (n_params >= 0),
    PRIMARY KEY (run_id, layer_id)
);

-- The trainable tensors (ONNX initializers) of each layer, in parameter
-- order: weight, then bias.
CREATE TABLE params (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    param_id INTEGER NOT NULL CHECK (param_id >= 0),
    layer_id INTEGER NOT NULL,
    name     TEXT    NOT NULL,                -- ONNX initializer name
    shape    TEXT    NOT NULL,                -- as stored in the file, e.g. '[64, 1, 3, 3]'
    numel    INTEGER NOT NULL CHECK (numel >= 0),
    PRIMARY KEY (run_id, param_id),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);
CREATE INDEX params_by_layer ON params (run_id, layer_id);

-- One summary row per (run, layer or whole network, curvature, repr).
-- condition = lambda_max / the smallest positive eigenvalue;
-- effective_rank = exp of the entropy of the normalised positive spectrum.
-- trace_stderr is set when the trace is a stochastic estimate.
CREATE TABLE curvature (
    run_id         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id       INTEGER,                   -- NULL: whole network
    curvature      TEXT    NOT NULL,          -- hessian, ggn, fisher, fisher_mc, fisher_emp
    repr           TEXT    NOT NULL,          -- full, kfac, diag, unit
    method         TEXT    NOT NULL,          -- exact, lanczos, slq, hutchinson, kron
    dim            INTEGER CHECK (dim IS NULL OR dim >= 0),
    trace          REAL,
    trace_stderr   REAL,
    frobenius      REAL,
    lambda_max     REAL,
    lambda_min     REAL,
    condition      REAL,
    effective_rank REAL,
    seconds        REAL,                      -- time spent on this row's numbers
    UNIQUE (run_id, layer_id, curvature, repr, method),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);
-- UNIQUE treats NULLs as distinct, so the whole-network rows get their own
-- partial index to stay one per (run, curvature, repr, method): the exact
-- whole-network block and its Lanczos / SLQ / Hutchinson estimates can sit
-- side by side.
CREATE UNIQUE INDEX curvature_network_unique
    ON curvature (run_id, curvature, repr, method) WHERE layer_id IS NULL;
CREATE INDEX curvature_by_kind ON curvature (curvature, repr);

-- Spectra, rank-ordered: k = 0 is the largest eigenvalue; k counts from
-- the top of the whole spectrum, so Lanczos's bottom eigenvalues of a
-- matrix of order d have k = d - 1, d - 2, ...  method as in curvature.
CREATE TABLE eigenvalues (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id  INTEGER,                        -- NULL: whole network
    curvature TEXT    NOT NULL,
    repr      TEXT    NOT NULL,
    k         INTEGER NOT NULL CHECK (k >= 0),
    value     REAL    NOT NULL,
    method    TEXT    NOT NULL DEFAULT 'exact',
    UNIQUE (run_id, layer_id, curvature, repr, method, k),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX eigenvalues_network_unique
    ON eigenvalues (run_id, curvature, repr, method, k) WHERE layer_id IS NULL;

-- The raw Lanczos tridiagonal coefficients of every matrix-free run (top-k
-- Lanczos and each SLQ probe), so a density can be recomputed with another
-- smoothing width or grid: for probe p, T has alpha on its diagonal and
-- beta(step) between step and step + 1.  repeat numbers the --repeats runs
-- (different seeds).
CREATE TABLE lanczos_coefficients (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id  INTEGER,                        -- NULL: whole network
    curvature TEXT    NOT NULL,
    method    TEXT    NOT NULL CHECK (method IN ('lanczos', 'slq')),
    repeat    INTEGER NOT NULL CHECK (repeat >= 0),
    probe     INTEGER NOT NULL CHECK (probe >= 0),
    step      INTEGER NOT NULL CHECK (step >= 0),
    alpha     REAL    NOT NULL,
    beta      REAL    NOT NULL,
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);
CREATE INDEX lanczos_coefficients_by_run ON lanczos_coefficients (run_id, curvature, method, repeat, probe, step);

-- Ritz values of the top / bottom Lanczos runs with their residual norms
-- ||A y - theta y|| (the convergence evidence), per repeat: the spread
-- across repeats shows how much a value moves with another random start.
CREATE TABLE ritz_values (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id  INTEGER,                        -- NULL: whole network
    curvature TEXT    NOT NULL,
    repeat    INTEGER NOT NULL CHECK (repeat >= 0),
    k         INTEGER NOT NULL CHECK (k >= 0),  -- 0 = largest Ritz value of the run
    value     REAL    NOT NULL,
    residual  REAL,
    converged INTEGER NOT NULL CHECK (converged IN (0, 1)),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);
CREATE INDEX ritz_values_by_run ON ritz_values (run_id, curvature, repeat, k);

-- Spectral density estimates (stochastic Lanczos quadrature), one row per
-- histogram bin [lo, hi); density integrates to 1 over the bins.
CREATE TABLE density (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id  INTEGER,                        -- NULL: whole network
    curvature TEXT    NOT NULL,
    lo        REAL    NOT NULL,
    hi        REAL    NOT NULL CHECK (hi >= lo),
    density   REAL    NOT NULL,
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);
CREATE INDEX density_by_layer ON density (run_id, layer_id, curvature, lo);

-- Eigenvalues of the Kronecker factors of a K-FAC block: A (input side,
-- with the bias column when the layer has one) and G (output side);
-- k = 0 is the largest.  The block's eigenvalues are all products
-- lambda_i(G) * lambda_j(A).
CREATE TABLE kfac_factors (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id  INTEGER NOT NULL,
    curvature TEXT    NOT NULL,
    factor    TEXT    NOT NULL CHECK (factor IN ('A', 'G')),
    k         INTEGER NOT NULL CHECK (k >= 0),
    value     REAL    NOT NULL,
    PRIMARY KEY (run_id, layer_id, curvature, factor, k),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);

-- An approximate representation (kfac, unit, diag) of a block scored
-- against the exact block (reference_repr, normally 'full') of the same
-- curvature.  Errors are relative: |approx - exact| / |exact|, in the
-- Frobenius norm for the matrix; top_eigvec_alignment is |cosine| between
-- the two top eigenvectors (1 = same direction).
CREATE TABLE repr_comparison (
    run_id               INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id             INTEGER,             -- NULL: whole network
    curvature            TEXT    NOT NULL,
    repr                 TEXT    NOT NULL,
    reference_repr       TEXT    NOT NULL,
    rel_frobenius_error  REAL,
    rel_lambda_max_error REAL,
    rel_trace_error      REAL,
    top_eigvec_alignment REAL CHECK (top_eigvec_alignment IS NULL
                                     OR top_eigvec_alignment BETWEEN 0 AND 1.000001),
    UNIQUE (run_id, layer_id, curvature, repr, reference_repr),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX repr_comparison_network_unique
    ON repr_comparison (run_id, curvature, repr, reference_repr) WHERE layer_id IS NULL;

-- Per-parameter importance: one row per scalar parameter, named by its
-- initializer (params.param_id) and its row-major flat index in that tensor.
-- value is the parameter itself; obd / obs are the saliencies of Optimal
-- Brain Damage / Surgeon, taylor the first-order |value * grad|.
CREATE TABLE importance (
    run_id          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    param_id        INTEGER NOT NULL,
    flat_index      INTEGER NOT NULL CHECK (flat_index >= 0),
    value           REAL,
    grad            REAL,
    diag_ggn        REAL,
    diag_fisher_emp REAL,
    diag_hessian    REAL,
    obd             REAL,
    obs             REAL,
    taylor          REAL,
    unit            INTEGER,   -- output unit / channel of the layer (row of [W | b]); NULL for none
    PRIMARY KEY (run_id, param_id, flat_index),
    FOREIGN KEY (run_id, param_id) REFERENCES params (run_id, param_id) ON DELETE CASCADE
);

-- How well a preconditioned step predicts the change of the loss, per
-- preconditioner and damping (layer_id NULL: the whole step).
-- rho = actual_decrease / predicted_decrease.
CREATE TABLE step_diagnostics (
    run_id             INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    precond            TEXT    NOT NULL,
    damping            REAL,
    layer_id           INTEGER,               -- NULL: whole network
    grad_norm          REAL,
    step_norm          REAL,
    cosine             REAL,                  -- between step and -grad
    predicted_decrease REAL,
    actual_decrease    REAL,
    rho                REAL,
    best_lr            REAL,                  -- alpha minimising L(theta + alpha Delta) on the grid
    best_change        REAL                   -- L(theta + best_lr Delta) - L(theta)
);
CREATE INDEX step_diagnostics_by_run ON step_diagnostics (run_id, precond, layer_id);

-- Fine-tuning progress, one row per optimiser step.
CREATE TABLE finetune_steps (
    run_id          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch           INTEGER NOT NULL CHECK (epoch >= 0),
    step            INTEGER NOT NULL CHECK (step >= 0),
    loss            REAL,
    accuracy        REAL,
    lr              REAL,
    seconds         REAL,
    samples_per_sec REAL,
    PRIMARY KEY (run_id, epoch, step)
);

-- Fine-tuning evaluations, one row per epoch and data split.
CREATE TABLE finetune_evals (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch    INTEGER NOT NULL CHECK (epoch >= 0),
    split    TEXT    NOT NULL,                -- train, val, test; old_start, old (--old-data)
    loss     REAL,
    accuracy REAL,
    PRIMARY KEY (run_id, epoch, split)
);

-- ------------------------------------------------------------------ views
-- Views answer the common questions in one line; they hold no data.

-- Curvature rows with the layer's name and type; the whole network shows
-- as layer '(network)'.
CREATE VIEW v_layer_curvature AS
SELECT c.run_id, c.layer_id,
       coalesce(l.name, '(network)') AS layer,
       l.op_type, l.n_params,
       c.curvature, c.repr, c.method, c.dim,
       c.trace, c.trace_stderr, c.frobenius, c.lambda_max, c.lambda_min,
       c.condition, c.effective_rank, c.seconds
FROM curvature AS c
LEFT JOIN layers AS l ON l.run_id = c.run_id AND l.layer_id = c.layer_id;

-- Layers ranked by lambda_max within each (run, curvature, repr); rank 1
-- is the sharpest layer, ties share a rank.  Counted with a subquery
-- rather than RANK() so that SQLite before 3.25 can read the schema.
CREATE VIEW v_layers_by_lambda_max AS
SELECT c.run_id, c.curvature, c.repr,
       (SELECT count(*) FROM curvature AS o
         WHERE o.run_id = c.run_id AND o.curvature = c.curvature
           AND o.repr = c.repr AND o.layer_id IS NOT NULL
           AND o.lambda_max > c.lambda_max) + 1 AS rank,
       c.layer_id, l.name AS layer, l.op_type, l.n_params,
       c.lambda_max, c.lambda_min, c.trace, c.condition, c.effective_rank, c.method
FROM curvature AS c
JOIN layers AS l ON l.run_id = c.run_id AND l.layer_id = c.layer_id
WHERE c.lambda_max IS NOT NULL
ORDER BY c.run_id, c.curvature, c.repr, rank, c.layer_id;

-- One row per (run, curvature, repr): the whole-network row where one was
-- computed, next to aggregates over the layer rows.  sum_layer_trace is
-- the trace of the block-diagonal matrix the layers form, which equals the
-- whole network's trace for exact blocks; max_layer_lambda_max is a lower
-- bound of the whole network's lambda_max.
CREATE VIEW v_network_summary AS
SELECT k.run_id, r.model_path, r.kind, r.status, k.curvature, k.repr,
       n.method, n.dim, n.trace, n.trace_stderr, n.frobenius,
       n.lambda_max, n.lambda_min, n.condition, n.effective_rank,
       a.n_layers, a.sum_layer_trace, a.max_layer_lambda_max
FROM (SELECT DISTINCT run_id, curvature, repr FROM curvature) AS k
JOIN runs AS r ON r.id = k.run_id
LEFT JOIN curvature AS n
       ON n.run_id = k.run_id AND n.curvature = k.curvature
      AND n.repr = k.repr AND n.layer_id IS NULL
LEFT JOIN (SELECT run_id, curvature, repr, count(*) AS n_layers,
                  sum(trace) AS sum_layer_trace,
                  max(lambda_max) AS max_layer_lambda_max
             FROM curvature WHERE layer_id IS NOT NULL
            GROUP BY run_id, curvature, repr) AS a
       ON a.run_id = k.run_id AND a.curvature = k.curvature AND a.repr = k.repr;

-- The newest finished run of each model and kind.  A model is its content
-- (model_sha256), or its path when no hash was stored, so a retrained file
-- at the same path counts as a new model.
CREATE VIEW v_latest_run AS
SELECT r.id AS run_id, r.kind, r.model_path, r.model_sha256, r.data,
       r.n_samples, r.loss, r.version, r.started_at, r.finished_at, r.seconds,
       r.peak_rss_bytes
FROM runs AS r
WHERE r.status = 'done'
  AND r.id = (SELECT max(o.id) FROM runs AS o
               WHERE o.status = 'done' AND o.kind = r.kind
                 AND coalesce(o.model_sha256, o.model_path)
                   = coalesce(r.model_sha256, r.model_path));

-- Approximate representations scored against the exact block, with the
-- layer's name and type.
CREATE VIEW v_repr_error AS
SELECT x.run_id, x.layer_id,
       coalesce(l.name, '(network)') AS layer, l.op_type,
       x.curvature, x.repr, x.reference_repr,
       x.rel_frobenius_error, x.rel_lambda_max_error, x.rel_trace_error,
       x.top_eigvec_alignment
FROM repr_comparison AS x
LEFT JOIN layers AS l ON l.run_id = x.run_id AND l.layer_id = x.layer_id;

-- How much the top Ritz values move across --repeats (sample standard
-- deviation over the repeats; NULL with a single repeat).
CREATE VIEW v_ritz_spread AS
SELECT run_id, layer_id, curvature, k,
       count(*) AS repeats, avg(value) AS mean,
       CASE WHEN count(*) > 1 THEN
            sqrt(max(0.0, (sum(value * value) - sum(value) * sum(value) / count(*)) / (count(*) - 1)))
       END AS stddev,
       max(residual) AS max_residual, min(converged) AS all_converged
FROM ritz_values
GROUP BY run_id, layer_id, curvature, k;

-- The share (and count) of negative eigenvalues in each stochastic Lanczos
-- quadrature density: the density's mass below zero, a bin straddling zero
-- counted in proportion, times the matrix order.
CREATE VIEW v_spectrum_negative AS
SELECT d.run_id, d.layer_id, d.curvature,
       sum(CASE WHEN d.hi <= 0 THEN d.density * (d.hi - d.lo)
                WHEN d.lo < 0 THEN d.density * (0 - d.lo)
                ELSE 0 END) AS negative_fraction,
       sum(CASE WHEN d.hi <= 0 THEN d.density * (d.hi - d.lo)
                WHEN d.lo < 0 THEN d.density * (0 - d.lo)
                ELSE 0 END) * c.dim AS negative_count
FROM density AS d
JOIN curvature AS c
  ON c.run_id = d.run_id AND c.layer_id IS d.layer_id AND c.curvature = d.curvature
 AND c.method = 'slq'
GROUP BY d.run_id, d.layer_id, d.curvature;

-- Importance aggregated per output unit / channel of each layer, always
-- over every parameter (also when --importance-top stores only the top
-- elements in `importance`); unit NULL gathers the parameters without one.
CREATE TABLE importance_units (
    run_id              INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id            INTEGER NOT NULL,
    unit                INTEGER,
    n                   INTEGER NOT NULL CHECK (n > 0),
    obd_sum             REAL,
    obs_sum             REAL,
    taylor_sum          REAL,
    diag_ggn_sum        REAL,
    diag_fisher_emp_sum REAL,
    diag_hessian_sum    REAL,
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);
CREATE INDEX importance_units_by_layer ON importance_units (run_id, layer_id, unit);

-- The structured-pruning view: sum and mean of each score per unit ...
CREATE VIEW v_importance_unit AS
SELECT u.run_id, u.layer_id, l.name AS layer, u.unit, u.n,
       u.obd_sum, u.obd_sum / u.n AS obd_mean,
       u.obs_sum, u.obs_sum / u.n AS obs_mean,
       u.taylor_sum, u.taylor_sum / u.n AS taylor_mean,
       u.diag_ggn_sum, u.diag_fisher_emp_sum, u.diag_hessian_sum
FROM importance_units AS u
JOIN layers AS l ON l.run_id = u.run_id AND l.layer_id = u.layer_id
WHERE u.unit IS NOT NULL;

-- ... and per layer.
CREATE VIEW v_importance_layer AS
SELECT u.run_id, u.layer_id, l.name AS layer, l.op_type, sum(u.n) AS n,
       sum(u.obd_sum) AS obd_sum, sum(u.obd_sum) / sum(u.n) AS obd_mean,
       sum(u.obs_sum) AS obs_sum, sum(u.obs_sum) / sum(u.n) AS obs_mean,
       sum(u.taylor_sum) AS taylor_sum, sum(u.taylor_sum) / sum(u.n) AS taylor_mean,
       sum(u.diag_ggn_sum) AS diag_ggn_sum, sum(u.diag_fisher_emp_sum) AS diag_fisher_emp_sum,
       sum(u.diag_hessian_sum) AS diag_hessian_sum
FROM importance_units AS u
JOIN layers AS l ON l.run_id = u.run_id AND l.layer_id = u.layer_id
GROUP BY u.run_id, u.layer_id;

-- The pruning check: loss and accuracy after zeroing the share `fraction`
-- of weights (Gemm, MatMul, Conv weight tensors, ranked globally) with the
-- lowest `score` (magnitude, taylor, obd, obs); score 'none' is the
-- unpruned model.  Which score keeps the loss lowest predicts damage best.
CREATE TABLE pruning_curve (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    score     TEXT    NOT NULL,
    fraction  REAL    NOT NULL CHECK (fraction >= 0 AND fraction <= 1),
    n_pruned  INTEGER NOT NULL CHECK (n_pruned >= 0),
    loss      REAL,
    accuracy  REAL,
    UNIQUE (run_id, score, fraction)
);

-- Top Ritz vectors of a Lanczos run (--eigenvectors K), importance-style:
-- one row per parameter element (params.param_id, flat_index), k = 0 the
-- eigenvector of the largest Ritz value.  Unit norm over the operator's
-- dimension (the whole network, or the layer's block).
CREATE TABLE eigenvectors (
    run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id   INTEGER,                       -- NULL: whole network
    curvature  TEXT    NOT NULL,
    k          INTEGER NOT NULL CHECK (k >= 0),
    param_id   INTEGER NOT NULL,
    flat_index INTEGER NOT NULL CHECK (flat_index >= 0),
    value      REAL    NOT NULL,
    FOREIGN KEY (run_id, param_id) REFERENCES params (run_id, param_id) ON DELETE CASCADE
);
CREATE INDEX eigenvectors_by_run ON eigenvectors (run_id, curvature, k);

-- @version 2
-- Version 2 adds the tables and views below (noise scale, comparisons,
-- EWC penalties, quantization, Laplace, influence) and widens runs.kind
-- to 'quantize', 'laplace' and 'influence' (store.c rewrites the CHECK of
-- an upgraded file's runs table: the rows' format does not change).

-- The gradient noise scale (McCandlish et al. 2018, App. A) of an analyze
-- run with --noise-scale, one row per layer with per-sample gradients and
-- one for the whole network (layer_id NULL: the sums over those layers).
-- grad_sq_norm is the unbiased |G|^2 of the mean loss's gradient,
-- trace_cov the unbiased trace of the per-sample gradient covariance,
-- b_simple = trace_cov / grad_sq_norm (NULL when grad_sq_norm <= 0: the
-- gradient is below its noise), b_simple_se its delta-method standard
-- error over `groups` contiguous groups of the data (NULL with one group).
CREATE TABLE noise_scale (
    run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id     INTEGER,                     -- NULL: whole network
    grad_sq_norm REAL,
    trace_cov    REAL    CHECK (trace_cov IS NULL OR trace_cov >= 0),
    b_simple     REAL,
    b_simple_se  REAL    CHECK (b_simple_se IS NULL OR b_simple_se >= 0),
    n_samples    INTEGER NOT NULL CHECK (n_samples > 0),
    groups       INTEGER NOT NULL CHECK (groups > 0),
    UNIQUE (run_id, layer_id)
);

-- A preconditioner comparison (curvscope compare): one model tuned on the
-- same data, seed, batch and epochs with each method of a list.  Each
-- method is its own finetune run (comparison_methods.run_id).
CREATE TABLE comparisons (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    model_path      TEXT    NOT NULL,
    data            TEXT,                     -- training data and label specs
    test_data       TEXT,                     -- NULL: evaluated on the training data
    epochs          INTEGER NOT NULL CHECK (epochs > 0),
    batch           INTEGER NOT NULL CHECK (batch > 0),
    seed            INTEGER NOT NULL,
    target_accuracy REAL    CHECK (target_accuracy IS NULL OR (target_accuracy >= 0 AND target_accuracy <= 1)),
    started_at      TEXT    NOT NULL          -- UTC, ISO 8601
);

-- One method of a comparison.  train_seconds: the training loop's time
-- (steps with their curvature refreshes, no evaluations); samples_per_sec:
-- samples stepped over per train_second; peak_heap_bytes: the largest rise
-- of the heap in use above its level at the method's start, sampled after
-- every step (NULL where not measurable; runs.peak_rss_bytes is the
-- process's, which only grows); time_to_target: train_seconds at the end
-- of the first epoch whose test accuracy reached target_accuracy (NULL:
-- not reached).
CREATE TABLE comparison_methods (
    comparison_id       INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    method              TEXT    NOT NULL,
    run_id              INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    lr                  REAL    NOT NULL CHECK (lr > 0),
    damping             REAL    CHECK (damping IS NULL OR damping >= 0),
    train_seconds       REAL    CHECK (train_seconds IS NULL OR train_seconds >= 0),
    samples_per_sec     REAL    CHECK (samples_per_sec IS NULL OR samples_per_sec > 0),
    peak_heap_bytes     INTEGER CHECK (peak_heap_bytes IS NULL OR peak_heap_bytes >= 0),
    final_test_loss     REAL,
    final_test_accuracy REAL    CHECK (final_test_accuracy IS NULL OR (final_test_accuracy >= 0 AND final_test_accuracy <= 1)),
    time_to_target      REAL    CHECK (time_to_target IS NULL OR time_to_target >= 0),
    epoch_to_target     INTEGER CHECK (epoch_to_target IS NULL OR epoch_to_target >= 0),
    PRIMARY KEY (comparison_id, method)
);

-- Per method and epoch (0-based): cumulative training time at its end,
-- that epoch's throughput, loss and accuracy over the training and test sets.
CREATE TABLE comparison_epochs (
    comparison_id   INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    epoch           INTEGER NOT NULL CHECK (epoch >= 0),
    train_seconds   REAL    CHECK (train_seconds IS NULL OR train_seconds >= 0),
    samples_per_sec REAL,
    train_loss      REAL,
    train_accuracy  REAL,
    test_loss       REAL,
    test_accuracy   REAL,
    PRIMARY KEY (comparison_id, method, epoch),
    FOREIGN KEY (comparison_id, method) REFERENCES comparison_methods (comparison_id, method) ON DELETE CASCADE
);

-- The comparison as the ASDL paper tabulates it (Osawa et al. 2023): per
-- method throughput, peak memory, final test loss and accuracy, time to
-- the target accuracy, fastest first.
CREATE VIEW v_comparison AS
SELECT m.comparison_id, m.method, m.run_id, m.lr, m.damping,
       round(m.samples_per_sec, 1) AS samples_per_sec,
       round(m.peak_heap_bytes / 1048576.0, 2) AS peak_heap_mib,
       m.final_test_loss, m.final_test_accuracy,
       c.target_accuracy, m.time_to_target, m.epoch_to_target,
       m.train_seconds
FROM comparison_methods AS m
JOIN comparisons AS c ON c.id = m.comparison_id
ORDER BY m.comparison_id, m.time_to_target IS NULL, m.time_to_target, m.final_test_accuracy DESC;
-- The elastic weight consolidation penalty of a finetune run with --ewc
-- (Kirkpatrick et al. 2017, eq. 3), one row per logged step (the steps of
-- finetune_steps): (lambda / 2) sum_i F_i (theta_i - theta*_i)^2 at the
-- parameters the step's batch loss was taken at; the objective is that loss
-- plus this.  The conventions rows ewc_* name the run it came from, lambda
-- and the scaling of F relative to the loss.
CREATE TABLE finetune_penalty (
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch   INTEGER NOT NULL CHECK (epoch >= 0),
    step    INTEGER NOT NULL CHECK (step >= 0),
    penalty REAL    CHECK (penalty IS NULL OR penalty >= 0),
    PRIMARY KEY (run_id, epoch, step)
);

-- Forgetting per finetune run and epoch with --old-data: the old task's
-- loss and accuracy after the epoch next to those before the first step
-- (split 'old_start'); forgetting = accuracy lost on the old task.
CREATE VIEW v_forgetting AS
SELECT e.run_id, e.epoch,
       s.loss AS old_loss_start, e.loss AS old_loss,
       s.accuracy AS old_accuracy_start, e.accuracy AS old_accuracy,
       s.accuracy - e.accuracy AS forgetting,
       t.loss AS train_loss, t.accuracy AS train_accuracy
FROM finetune_evals e
JOIN finetune_evals s ON s.run_id = e.run_id AND s.split = 'old_start'
LEFT JOIN finetune_evals t ON t.run_id = e.run_id AND t.epoch = e.epoch AND t.split = 'train'
WHERE e.split = 'old';
-- One Laplace approximation around the trained weights (`curvscope laplace`,
-- doc/design.md section "Laplace"): posterior precision P = N C + diag(prior), C the
-- mean curvature `curvature` in representation `repr` over the parameters of
-- `subset` ('all' layers or the 'last-layer'), the ce likelihood SUMMED over
-- the n_samples training samples.  log_marglik = log_lik - 1/2 theta^T P0
-- theta - 1/2 log_det_precision + 1/2 log_det_prior.  prior_mode 'fixed' (the
-- given value), 'scalar' (one value maximising log_marglik) or 'layer' (one
-- per layer, in laplace_priors); prior_precision is the common value, NULL
-- for 'layer'.
CREATE TABLE laplace_fits (
    run_id            INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    curvature         TEXT    NOT NULL,
    repr              TEXT    NOT NULL CHECK (repr IN ('diag', 'kfac', 'full')),
    subset            TEXT    NOT NULL CHECK (subset IN ('all', 'last-layer')),
    prior_mode        TEXT    NOT NULL CHECK (prior_mode IN ('fixed', 'scalar', 'layer')),
    prior_precision   REAL    CHECK (prior_precision IS NULL OR prior_precision > 0),
    log_marglik       REAL    NOT NULL,
    log_lik           REAL    NOT NULL CHECK (log_lik <= 0),
    log_det_precision REAL    NOT NULL,
    log_det_prior     REAL    NOT NULL,
    n_params          INTEGER NOT NULL CHECK (n_params > 0),
    n_samples         INTEGER NOT NULL CHECK (n_samples > 0),
    UNIQUE (run_id)
);

-- Each posterior layer's prior precision (the diagonal of P0 over its
-- n_params parameters) and |theta*|^2 over them.
CREATE TABLE laplace_priors (
    run_id          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id        INTEGER NOT NULL,
    prior_precision REAL    NOT NULL CHECK (prior_precision > 0),
    n_params        INTEGER NOT NULL CHECK (n_params > 0),
    sq_norm         REAL    NOT NULL CHECK (sq_norm >= 0),
    UNIQUE (run_id, layer_id),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);

-- A predictive of the fit on the test set (--test-data): method 'map' (the
-- model at theta*), 'glm_probit' (the linearised model's Gaussian logits
-- N(z*, J P^-1 J^T) through the probit approximation softmax(z / sqrt(1 +
-- pi/8 diag)), 'glm_mc' (the same Gaussian by Monte Carlo, --mc-predictive
-- draws).  nll: mean over the n_test samples of -log p(y); ece over 15
-- equal-width bins of the top-class probability; brier: mean over samples of
-- sum_c (p_c - [c = y])^2.
CREATE TABLE laplace_predictive (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    method   TEXT    NOT NULL CHECK (method IN ('map', 'glm_probit', 'glm_mc', 'nn_mc')),
    n_test   INTEGER NOT NULL CHECK (n_test > 0),
    nll      REAL    NOT NULL CHECK (nll >= 0),
    accuracy REAL    NOT NULL CHECK (accuracy >= 0 AND accuracy <= 1),
    ece      REAL    NOT NULL CHECK (ece >= 0 AND ece <= 1),
    brier    REAL    NOT NULL CHECK (brier >= 0 AND brier <= 2),
    UNIQUE (run_id, method)
);
-- Influence of training example train_index on query query_index (curvscope
-- influence, doc/design.md section 2.13), by method: ekfac g_q^T (C + lambda I)^-1
-- g_m with C the EK-FAC curvature of the mean training loss, dot g_q^T g_m,
-- cosine the same over the norms.  Positive = helpful: training on the
-- example lowered the query's loss (removing it raises that loss by about
-- score / n_train for ekfac).  scope 'query': the top_k training examples of
-- each query of each sign (rank 1 the most helpful or most harmful); scope
-- 'train': the top_k queries of each training example of each sign; scope
-- 'full' (--full-matrix): every pair, direction and rank NULL.  Indices are
-- 0-based rows of --data and --query-data.
CREATE TABLE influence_scores (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    method      TEXT    NOT NULL CHECK (method IN ('ekfac', 'dot', 'cosine', 'tracin')),
    scope       TEXT    NOT NULL CHECK (scope IN ('query', 'train', 'full')),
    direction   TEXT    CHECK (direction IS NULL OR direction IN ('helpful', 'harmful')),
    rank        INTEGER CHECK (rank IS NULL OR rank >= 1),
    query_index INTEGER NOT NULL CHECK (query_index >= 0),
    train_index INTEGER NOT NULL CHECK (train_index >= 0),
    score       REAL    NOT NULL
);
CREATE INDEX influence_scores_by_query ON influence_scores (run_id, method, scope, query_index);
CREATE INDEX influence_scores_by_train ON influence_scores (run_id, method, scope, train_index);

-- Self-influence g_m^T (C + lambda I)^-1 g_m of every training example
-- (EK-FAC, the same C and lambda), with its label and loss; rank 1 is the
-- largest.  Examples the model finds surprising and that pull the
-- parameters hard rank first: mislabelled ones among them.
CREATE TABLE influence_self (
    run_id         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    train_index    INTEGER NOT NULL CHECK (train_index >= 0),
    label          INTEGER,                   -- NULL for real-valued targets
    loss           REAL,
    self_influence REAL    NOT NULL,
    rank           INTEGER NOT NULL CHECK (rank >= 1),
    PRIMARY KEY (run_id, train_index)
);

-- Mislabel candidates: the training examples by self-influence, largest
-- first, with the fraction of the training set ranked at or above them
-- (inspect those with quantile <= 0.1 first; README "Finding mislabelled
-- examples").
CREATE VIEW v_mislabel_candidates AS
SELECT s.run_id, s.rank, s.train_index, s.label, s.loss, s.self_influence,
       CAST(s.rank AS REAL) / (SELECT count(*) FROM influence_self AS t WHERE t.run_id = s.run_id) AS quantile
FROM influence_self AS s
ORDER BY s.run_id, s.rank;

-- curvscope quantize: the Hutchinson trace of the Hessian block of each
-- quantized layer's weight tensor (bias excluded), with its standard error
-- over the Rademacher probes.
CREATE TABLE hessian_traces (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id INTEGER NOT NULL,
    trace    REAL,
    se       REAL    CHECK (se IS NULL OR se >= 0),
    n_probes INTEGER NOT NULL CHECK (n_probes >= 2),
    PRIMARY KEY (run_id, layer_id),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);

-- HAWQ-V2 sensitivity of a layer at a width: omega = trace / n * delta_norm_sq,
-- delta_norm_sq = ||Q_bits(W) - W||^2 (symmetric per-tensor rounding).
CREATE TABLE quant_sensitivity (
    run_id        INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id      INTEGER NOT NULL,
    bits          INTEGER NOT NULL CHECK (bits BETWEEN 2 AND 8),
    omega         REAL,
    delta_norm_sq REAL    CHECK (delta_norm_sq IS NULL OR delta_norm_sq >= 0),
    PRIMARY KEY (run_id, layer_id, bits),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);

-- The width chosen for each quantized layer.
CREATE TABLE quant_allocation (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    layer_id INTEGER NOT NULL,
    bits     INTEGER NOT NULL CHECK (bits BETWEEN 2 AND 8),
    PRIMARY KEY (run_id, layer_id),
    FOREIGN KEY (run_id, layer_id) REFERENCES layers (run_id, layer_id) ON DELETE CASCADE
);

-- The written model: predicted loss L0 + g^T dW + 1/2 sum_i Tr(H_i)/n_i ||dW_i||^2
-- with the half-width `tolerance` of its interval (conventions
-- quant_prediction and quant_tolerance), the measured loss of the written
-- file, and its parameter bytes (quantized weights at their widths, a
-- float32 scale each, other parameters float32).
CREATE TABLE quant_result (
    run_id         INTEGER NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    loss_before    REAL,
    predicted_loss REAL,
    tolerance      REAL    CHECK (tolerance IS NULL OR tolerance >= 0),
    measured_loss  REAL,
    size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
    format         TEXT    NOT NULL CHECK (format IN ('fake', 'qdq'))
);

-- @version 3
-- Version 3 widens two CHECKs, in place (store.c rewrites the statements of
-- an upgraded file's tables, as version 2 did for runs): laplace_predictive
-- takes method 'nn_mc', the predictive of weights sampled from the Laplace
-- posterior pushed through the network itself; influence_scores takes method
-- 'tracin' (Pruthi et al. 2020: the sum over checkpoints of lr_k g_q^T g_m).

-- Validation of an influence run by retraining (curvscope influence
-- --validate K / --lds S; doc/design.md §2.14).  Every retraining is the
-- same full-batch gradient descent from the model's weights (`epochs`
-- steps of learning rate `lr`), on all the training data (the reference),
-- on it without one example (leave-one-out) or on a random subset (LDS).
-- kind 'loo': n_examples examples left out, pearson and spearman over all
-- n_examples x n_queries (predicted, actual) pairs of influence_loo.
-- kind 'lds': n_examples subsets of subset_size examples; spearman is the
-- linear datamodeling score (Park et al. 2023), the mean over the
-- n_queries queries whose correlation is defined of Spearman(predicted,
-- actual) over the subsets (influence_lds), pearson the same mean of
-- Pearson's.
CREATE TABLE influence_validation (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('loo', 'lds')),
    method      TEXT    NOT NULL CHECK (method IN ('ekfac', 'dot', 'cosine', 'tracin')),
    n_examples  INTEGER NOT NULL CHECK (n_examples > 0),
    n_queries   INTEGER NOT NULL CHECK (n_queries >= 0),
    subset_size INTEGER NOT NULL CHECK (subset_size > 0),   -- training examples of each retraining
    epochs      INTEGER NOT NULL CHECK (epochs > 0),
    lr          REAL    NOT NULL CHECK (lr > 0),
    pearson     REAL    CHECK (pearson IS NULL OR pearson BETWEEN -1 AND 1),
    spearman    REAL    CHECK (spearman IS NULL OR spearman BETWEEN -1 AND 1),
    PRIMARY KEY (run_id, kind, method)
);

-- Leave-one-out: actual = L_q(theta without m) - L_q(theta with all),
-- predicted = score(m, q) / n_train (removing a helpful example raises the
-- query's loss).  actual is the same for every method.
CREATE TABLE influence_loo (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    method      TEXT    NOT NULL CHECK (method IN ('ekfac', 'dot', 'cosine', 'tracin')),
    train_index INTEGER NOT NULL CHECK (train_index >= 0),
    query_index INTEGER NOT NULL CHECK (query_index >= 0),
    predicted   REAL,
    actual      REAL,
    PRIMARY KEY (run_id, method, train_index, query_index)
);

-- LDS: for subset `subset` (0-based, in the order drawn),
-- actual = L_q(theta on the subset) - L_q(theta with all), predicted = the
-- sum of score(m, q) / n_train over the examples m the subset leaves out.
CREATE TABLE influence_lds (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    method      TEXT    NOT NULL CHECK (method IN ('ekfac', 'dot', 'cosine', 'tracin')),
    subset      INTEGER NOT NULL CHECK (subset >= 0),
    query_index INTEGER NOT NULL CHECK (query_index >= 0),
    predicted   REAL,
    actual      REAL,
    PRIMARY KEY (run_id, method, subset, query_index)
);

-- @version 4
-- The parameters that are parts of one initializer of the file: an export
-- without constant folding feeds a weight to its layers through view nodes
-- (Transpose, Slice, Split, Reshape, ...), which curvscope folds at load
-- into parts, each a parameter of its layer (doc/design.md §2.3).  One row
-- per such parameter of params: source is the initializer of the file it
-- is part of (the name --freeze-params takes and finetune --out writes),
-- source_shape that initializer's shape.  Parameters stored as they are in
-- the file have no row here.
CREATE TABLE param_parts (
    run_id       INTEGER NOT NULL,
    param_id     INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    source_shape TEXT    NOT NULL,
    PRIMARY KEY (run_id, param_id),
    FOREIGN KEY (run_id, param_id) REFERENCES params (run_id, param_id) ON DELETE CASCADE
);
