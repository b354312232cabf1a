"""The store's tables, as an ordered list of migrations.

The schema is designed for every capability at once (annotations from people and LMs, features,
route plans, jobs, runs, mixtures) so later work adds code, not tables. A new change is a new entry
at the end of ``MIGRATIONS``; ``meta.schema_version`` records how far a workspace has come.
"""

from __future__ import annotations

V1 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('preference', 'sft', 'safety', 'eval')),
    source TEXT,
    description TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE instances (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    prompt TEXT NOT NULL,
    messages TEXT,
    response_a TEXT,
    response_b TEXT,
    model_a TEXT,
    model_b TEXT,
    source TEXT,
    domain TEXT,
    subset TEXT,
    gold INTEGER CHECK (gold BETWEEN -2 AND 2),
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (dataset_id, uid)
);
CREATE INDEX instances_dataset_domain ON instances(dataset_id, domain);
CREATE INDEX instances_dataset_source ON instances(dataset_id, source);
CREATE INDEX instances_dataset_subset ON instances(dataset_id, subset);

-- Full-text search over the text a curator reads; kept in step by triggers.
CREATE VIRTUAL TABLE instances_fts USING fts5(
    prompt, response_a, response_b,
    content='instances', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER instances_fts_ai AFTER INSERT ON instances BEGIN
    INSERT INTO instances_fts(rowid, prompt, response_a, response_b)
    VALUES (new.id, new.prompt, new.response_a, new.response_b);
END;
CREATE TRIGGER instances_fts_ad AFTER DELETE ON instances BEGIN
    INSERT INTO instances_fts(instances_fts, rowid, prompt, response_a, response_b)
    VALUES ('delete', old.id, old.prompt, old.response_a, old.response_b);
END;
CREATE TRIGGER instances_fts_au AFTER UPDATE OF prompt, response_a, response_b ON instances BEGIN
    INSERT INTO instances_fts(instances_fts, rowid, prompt, response_a, response_b)
    VALUES ('delete', old.id, old.prompt, old.response_a, old.response_b);
    INSERT INTO instances_fts(rowid, prompt, response_a, response_b)
    VALUES (new.id, new.prompt, new.response_a, new.response_b);
END;

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('curator', 'annotator')),
    password_hash TEXT,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- One table for human and LM labels. Preferences are -2..2 (negative: A better).
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    annotator_kind TEXT NOT NULL CHECK (annotator_kind IN ('human', 'lm')),
    annotator TEXT NOT NULL,
    overall INTEGER CHECK (overall BETWEEN -2 AND 2),
    helpful INTEGER CHECK (helpful BETWEEN -2 AND 2),
    harmless INTEGER CHECK (harmless BETWEEN -2 AND 2),
    truthful INTEGER CHECK (truthful BETWEEN -2 AND 2),
    confidence REAL CHECK (confidence BETWEEN 0 AND 1),
    confidence_level TEXT CHECK (confidence_level IN ('low', 'medium', 'high')),
    reasons TEXT NOT NULL DEFAULT '{}',
    justification TEXT,
    probs TEXT,
    model TEXT,
    template_hash TEXT,
    time_spent_s REAL,
    status TEXT NOT NULL DEFAULT 'submitted' CHECK (status IN ('draft', 'submitted')),
    origin TEXT NOT NULL DEFAULT 'app',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (instance_id, annotator_kind, annotator)
);
CREATE INDEX annotations_annotator ON annotations(annotator_kind, annotator);

-- Per-instance label summary, refreshed on every annotation write, so that filtering 100k
-- instances by label or agreement is an index lookup rather than an aggregate.
CREATE TABLE instance_summary (
    instance_id INTEGER PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
    n_human INTEGER NOT NULL DEFAULT 0,
    human_mean REAL,
    human_verdict INTEGER,
    n_lm INTEGER NOT NULL DEFAULT 0,
    lm_mean REAL,
    lm_verdict INTEGER,
    agreement INTEGER
);
CREATE INDEX instance_summary_human ON instance_summary(human_verdict);
CREATE INDEX instance_summary_agreement ON instance_summary(agreement);

CREATE TABLE assignments (
    id INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    origin TEXT NOT NULL DEFAULT 'filter' CHECK (origin IN ('filter', 'route_plan', 'escalation')),
    plan_id INTEGER REFERENCES route_plans(id) ON DELETE SET NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'skipped')),
    position INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (instance_id, user_id)
);
CREATE INDEX assignments_queue ON assignments(user_id, status, position);

CREATE TABLE flags (
    id INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    category TEXT NOT NULL CHECK (category IN
        ('harmful content', 'broken text', 'wrong label', 'privacy', 'other')),
    note TEXT,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    exclude INTEGER NOT NULL DEFAULT 0,
    resolution TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    resolved_at TEXT
);
CREATE INDEX flags_instance ON flags(instance_id);

-- Cached instance features (binary bins and tags), one row per instance and feature.
CREATE TABLE features (
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    extractor TEXT NOT NULL,
    PRIMARY KEY (instance_id, name)
) WITHOUT ROWID;
CREATE INDEX features_name ON features(name);

CREATE TABLE sweeps (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    eval_dataset_id INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
    config TEXT NOT NULL DEFAULT '{}',
    job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE sweep_runs (
    id INTEGER PRIMARY KEY,
    sweep_id INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    budget REAL NOT NULL,
    human_ids TEXT NOT NULL,
    feature_vector TEXT NOT NULL,
    score REAL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE ppms (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER REFERENCES datasets(id) ON DELETE CASCADE,
    sweep_id INTEGER REFERENCES sweeps(id) ON DELETE SET NULL,
    kind TEXT NOT NULL,
    path TEXT,
    metrics TEXT NOT NULL DEFAULT '{}',
    provenance TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE route_plans (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    ppm_id INTEGER REFERENCES ppms(id) ON DELETE SET NULL,
    method TEXT NOT NULL,
    budget REAL NOT NULL,
    predicted_score REAL,
    params TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE route_plan_items (
    plan_id INTEGER NOT NULL REFERENCES route_plans(id) ON DELETE CASCADE,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    target TEXT NOT NULL CHECK (target IN ('human', 'lm')),
    gain REAL,
    PRIMARY KEY (plan_id, instance_id)
) WITHOUT ROWID;

CREATE TABLE judges (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    backend TEXT NOT NULL,
    model TEXT,
    template TEXT,
    template_hash TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    calibration TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress REAL NOT NULL DEFAULT 0,
    message TEXT,
    worker TEXT,
    pid INTEGER,
    pgid INTEGER,
    ray_job_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    heartbeat_at TEXT,
    log_path TEXT,
    checkpoint_path TEXT,
    result TEXT,
    error TEXT,
    created_by TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX jobs_status ON jobs(status, created_at);

CREATE TABLE job_metrics (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX job_metrics_job ON job_metrics(job_id, name, step);

CREATE TABLE mixtures (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('sft', 'safety', 'preference')),
    spec TEXT NOT NULL,
    manifest TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT,
    path TEXT,
    job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (name, version)
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    kind TEXT NOT NULL CHECK (kind IN ('reward', 'sft', 'dpo', 'probe')),
    name TEXT,
    dataset_id INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
    mixture_id INTEGER REFERENCES mixtures(id) ON DELETE SET NULL,
    base_model TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    evaluation TEXT NOT NULL DEFAULT '{}',
    artifact_path TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX runs_kind ON runs(kind, created_at);
"""

# Each entry: (version it brings the store to, SQL script). Append; never edit a shipped entry.
# v2: a feature's readable value beside its number ("high" for a binned similarity, the tag a
# tagger chose), so breakdowns and routing share one vocabulary.
V2 = """
ALTER TABLE features ADD COLUMN label TEXT;
CREATE INDEX features_name_label ON features(name, label);
"""

# v3: sign-in sessions that outlive a browser tab. Only a token's SHA-256 is kept (the token
# itself lives in the browser's cookie); a row ends when it expires or is revoked, and goes with
# its account.
V3 = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);
"""

# v4: Explore's saved views (a name for a filter, in the text form `--where` reads), and an
# index that deleting or replacing a dataset needs (its plan items are found by instance).
V4 = """
CREATE TABLE saved_views (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    dataset TEXT,
    query TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX route_plan_items_instance ON route_plan_items(instance_id);

-- Review: a reviewer role, and labels a reviewer accepted, edited or rejected. SQLite cannot
-- change a CHECK in place, so both tables are rebuilt by its documented procedure (new table,
-- copy, drop, rename; foreign keys off around the transaction: see Store.migrate). A rejected
-- label has status 'rejected', so every reader of submitted labels leaves it out.
CREATE TABLE users_v4 (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('curator', 'annotator', 'reviewer')),
    password_hash TEXT,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO users_v4 SELECT id, name, role, password_hash, failed_logins, locked_until, disabled,
    created_at FROM users;
DROP TABLE users;
ALTER TABLE users_v4 RENAME TO users;

CREATE TABLE annotations_v4 (
    id INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    annotator_kind TEXT NOT NULL CHECK (annotator_kind IN ('human', 'lm')),
    annotator TEXT NOT NULL,
    overall INTEGER CHECK (overall BETWEEN -2 AND 2),
    helpful INTEGER CHECK (helpful BETWEEN -2 AND 2),
    harmless INTEGER CHECK (harmless BETWEEN -2 AND 2),
    truthful INTEGER CHECK (truthful BETWEEN -2 AND 2),
    confidence REAL CHECK (confidence BETWEEN 0 AND 1),
    confidence_level TEXT CHECK (confidence_level IN ('low', 'medium', 'high')),
    reasons TEXT NOT NULL DEFAULT '{}',
    justification TEXT,
    probs TEXT,
    model TEXT,
    template_hash TEXT,
    time_spent_s REAL,
    status TEXT NOT NULL DEFAULT 'submitted' CHECK (status IN ('draft', 'submitted', 'rejected')),
    origin TEXT NOT NULL DEFAULT 'app',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    review_status TEXT CHECK (review_status IN ('accepted', 'rejected')),
    reviewed_by TEXT,
    reviewed_at TEXT,
    review_note TEXT,
    review_original TEXT,
    UNIQUE (instance_id, annotator_kind, annotator)
);
INSERT INTO annotations_v4 (id, instance_id, annotator_kind, annotator, overall, helpful,
    harmless, truthful, confidence, confidence_level, reasons, justification, probs, model,
    template_hash, time_spent_s, status, origin, created_at, updated_at)
SELECT id, instance_id, annotator_kind, annotator, overall, helpful, harmless, truthful,
    confidence, confidence_level, reasons, justification, probs, model, template_hash,
    time_spent_s, status, origin, created_at, updated_at FROM annotations;
DROP TABLE annotations;
ALTER TABLE annotations_v4 RENAME TO annotations;
CREATE INDEX annotations_annotator ON annotations(annotator_kind, annotator);
CREATE INDEX annotations_review ON annotations(review_status);
"""

# Migrations that rebuild a table another table refers to: SQLite's procedure needs foreign
# keys off (outside the transaction), then a foreign_key_check before they are back on.
REBUILDS = frozenset({4})

# v5: jobs that run on a Ray cluster away from the workspace. ``node`` is the Ray node that ran
# the job, ``artifact_uri`` where its artefacts went (a folder or an fsspec URL), and
# ``log_offset`` how much of the Ray job's log the workspace has consumed, so a worker that takes
# over applies each event the job streamed exactly once.
V5 = """
ALTER TABLE jobs ADD COLUMN node TEXT;
ALTER TABLE jobs ADD COLUMN artifact_uri TEXT;
ALTER TABLE jobs ADD COLUMN log_offset INTEGER NOT NULL DEFAULT 0;
"""

MIGRATIONS: list[tuple[int, str]] = [
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
