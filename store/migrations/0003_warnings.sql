-- Rules (data the analytics tier evaluates), warnings (what they raise), silences and maintenance
-- windows (what suppresses them).

CREATE TABLE rules (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The serde shapes of `offsite_store::rules::{Scope, Condition}`.
    scope       jsonb NOT NULL DEFAULT '{}',
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    condition   jsonb NOT NULL,
    -- Regulatory item (catalog code) the rule enforces.
    item        text,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every change, whoever makes it, tells the processes that hold rules in memory to reload.
CREATE FUNCTION rules_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('offsite_rules', OLD.id::text);
    ELSE
        PERFORM pg_notify('offsite_rules', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER rules_notify AFTER INSERT OR UPDATE OR DELETE ON rules
    FOR EACH ROW EXECUTE FUNCTION rules_notify();

-- A silence matches a warning when every non-null field matches (all null: everything).
CREATE TABLE silences (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text,
    object_id   text,
    metric_key  text,
    event       text,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    reason      text NOT NULL CHECK (length(reason) >= 1),
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_ends_idx ON silences (ends_at);

CREATE TABLE maintenance (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text,
    object_id   text,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    reason      text NOT NULL CHECK (length(reason) >= 1),
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (device_id IS NOT NULL OR object_id IS NOT NULL)
);
CREATE INDEX maintenance_ends_idx ON maintenance (ends_at);

CREATE TABLE warnings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- One open warning per key (source, device or object, event): see the partial unique index.
    dedup_key       text NOT NULL,
    -- Detector (rule engine, model) name and version: part of the evidence.
    source          text NOT NULL,
    source_version  text NOT NULL,
    event           text NOT NULL,
    level           smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    device_key      integer NOT NULL REFERENCES devices (key),
    metric_id       integer REFERENCES metrics (id),
    object_id       text,
    -- Warnings of one object close in time share a group; a warning opened alone is its own group
    -- (the trigger below fills it in before the NOT NULL check).
    group_id        bigint NOT NULL,
    detail          text NOT NULL,
    score           double precision NOT NULL DEFAULT 0,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    count           integer NOT NULL DEFAULT 1 CHECK (count >= 1),
    resolved_at     timestamptz,
    resolution      text CHECK (resolution IN ('cleared', 'manual', 'expired')),
    resolved_by     text,
    -- Why a person resolved it by hand.
    resolution_note text,
    silenced_by     bigint REFERENCES silences (id),
    evidence        jsonb NOT NULL DEFAULT '{}',
    CHECK (last_seen >= first_seen),
    CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);

-- A warning opened alone is its own group. Identity values are assigned before BEFORE triggers run.
CREATE FUNCTION warnings_own_group() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.group_id := coalesce(NEW.group_id, NEW.id);
    RETURN NEW;
END
$$;
CREATE TRIGGER warnings_own_group BEFORE INSERT ON warnings
    FOR EACH ROW EXECUTE FUNCTION warnings_own_group();

-- The dedup invariant, enforced here: one open warning per key.
CREATE UNIQUE INDEX warnings_open_dedup_idx ON warnings (dedup_key) WHERE resolved_at IS NULL;
CREATE INDEX warnings_first_seen_idx ON warnings (first_seen DESC);
CREATE INDEX warnings_device_idx ON warnings (device_key, first_seen DESC);
CREATE INDEX warnings_open_object_idx ON warnings (object_id, first_seen) WHERE resolved_at IS NULL;
CREATE INDEX warnings_group_idx ON warnings (group_id);
