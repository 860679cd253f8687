-- The task workflow (任务): the working calendar, time-limit policies, who is responsible for what
-- where, tasks with their append-only timeline, the checkpoints the scheduler fires, and stored
-- files. The state machine itself lives in `offsite_store::tasks`; the columns here keep what it
-- decided, and the CHECKs keep impossible rows out.

-- Days that differ from the weekday/weekend rule (the administrator maintains them every year).
CREATE TABLE calendar_days (
    day        date PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('holiday', 'workday')),
    name       text CHECK (length(name) <= 100),
    updated_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Limits and dispatch policy per regulatory item (catalog code) and level; item '*' holds the
-- defaults for a level. A limit is '<n>m' (minutes), '<n>h' (calendar hours) or '<n>wd' (working days).
CREATE TABLE task_policies (
    item                   text NOT NULL CHECK (item = '*' OR item ~ '^[A-Za-z0-9_.-]{1,64}$'),
    level                  smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    sign_limit             text NOT NULL CHECK (sign_limit ~ '^[1-9][0-9]{0,5}(m|h|wd)$'),
    handle_limit           text NOT NULL CHECK (handle_limit ~ '^[1-9][0-9]{0,5}(m|h|wd)$'),
    -- Red warnings of this item become tasks without a person triaging them.
    auto_dispatch          boolean NOT NULL DEFAULT false,
    -- Who reviews feedback; NULL: the dispatching monitoring center.
    reviewer_department_id bigint REFERENCES departments (id) ON DELETE SET NULL,
    updated_by             text,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item, level)
);
-- Defaults from published 12345 hotline rules (workflow.md).
INSERT INTO task_policies (item, level, sign_limit, handle_limit) VALUES
    ('*', 1, '30m', '24h'),
    ('*', 2, '2h', '3wd'),
    ('*', 3, '2h', '5wd'),
    ('*', 4, '1wd', '10wd');

-- Which department handles an item in a region (事项-区划-部门). Lookup walks from the object's
-- region up its ancestors; without a match the object's own department handles it.
CREATE TABLE responsibilities (
    item          text NOT NULL CHECK (item ~ '^[A-Za-z0-9_.-]{1,64}$'),
    region_code   text NOT NULL REFERENCES regions (code) ON DELETE CASCADE,
    department_id bigint NOT NULL REFERENCES departments (id) ON DELETE CASCADE,
    PRIMARY KEY (item, region_code)
);

-- Stored files are content-addressed: the bytes live in the file store (a local directory now),
-- this row says what they are.
CREATE TABLE files (
    sha256       text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size         bigint NOT NULL CHECK (size >= 0),
    content_type text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE task_no_seq;

CREATE TABLE tasks (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'RW', the Shanghai date of dispatch, a six-digit sequence: what people quote on the phone.
    task_no                text NOT NULL CONSTRAINT tasks_task_no_key UNIQUE,
    title                  text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    description            text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    source                 text NOT NULL CHECK (source IN ('warning', 'complaint', 'province', 'manual')),
    -- The warning id, complaint tracking number or provincial reference it came from.
    source_ref             text CHECK (length(source_ref) <= 100),
    level                  smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    item                   text,
    object_id              text,
    region_code            text,
    -- The lead (or only) department now handling it.
    department_id          bigint NOT NULL REFERENCES departments (id),
    reviewer_department_id bigint REFERENCES departments (id) ON DELETE SET NULL,
    state                  text NOT NULL CHECK (state IN
                               ('dispatched', 'signed', 'in_progress', 'feedback', 'closed', 'archived', 'returned')),
    sign_limit             text NOT NULL,
    handle_limit           text NOT NULL,
    dispatched_at          timestamptz NOT NULL,
    dispatched_by          text NOT NULL,
    sign_due               timestamptz NOT NULL,
    signed_at              timestamptz,
    handle_due             timestamptz,
    feedback_at            timestamptz,
    closed_at              timestamptz,
    archived_at            timestamptz,
    extension_pending      boolean NOT NULL DEFAULT false,
    return_count           integer NOT NULL DEFAULT 0,
    transfer_count         integer NOT NULL DEFAULT 0,
    redo_count             integer NOT NULL DEFAULT 0,
    extension_count        integer NOT NULL DEFAULT 0,
    review_count           integer NOT NULL DEFAULT 0,
    -- Set at the first review: was the first feedback rejected (a redo)?
    first_review_rejected  boolean,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((signed_at IS NULL) = (handle_due IS NULL)),
    CHECK (state NOT IN ('closed', 'archived') OR closed_at IS NOT NULL)
);
CREATE INDEX tasks_department_state_idx ON tasks (department_id, state, id DESC);
CREATE INDEX tasks_state_idx ON tasks (state, id DESC);
CREATE INDEX tasks_dispatched_idx ON tasks (dispatched_at);
CREATE INDEX tasks_source_idx ON tasks (source, source_ref);
CREATE INDEX tasks_object_idx ON tasks (object_id);

-- Every department on a task: the lead and, for a joint task (联合监管), the co-handlers. `state`
-- copies the task's (kept by the triggers below) so a department's inbox is one index range:
-- (department, state) in task order.
CREATE TABLE task_departments (
    task_id       bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    department_id bigint NOT NULL REFERENCES departments (id),
    role          text NOT NULL CHECK (role IN ('lead', 'co')),
    state         text NOT NULL,
    PRIMARY KEY (task_id, department_id)
);
CREATE INDEX task_departments_department_idx ON task_departments (department_id, task_id);
CREATE INDEX task_departments_inbox_idx ON task_departments (department_id, state, task_id);

CREATE FUNCTION task_departments_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS NULL THEN
        SELECT t.state INTO NEW.state FROM tasks t WHERE t.id = NEW.task_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER task_departments_state BEFORE INSERT ON task_departments
    FOR EACH ROW EXECUTE FUNCTION task_departments_state();

CREATE FUNCTION tasks_state_to_departments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_departments SET state = NEW.state WHERE task_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_state_to_departments AFTER UPDATE OF state ON tasks
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION tasks_state_to_departments();

-- The timeline: append-only (see the trigger), one row per transition, comment, attachment,
-- reminder or supervision. Notifications fan out from here.
CREATE TABLE task_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id       bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    actor         text NOT NULL,
    action        text NOT NULL CHECK (action ~ '^[a-z_]{1,40}$'),
    from_state    text,
    to_state      text,
    -- The department the event concerns (the new one on dispatch/transfer, the acting one otherwise).
    department_id bigint,
    reason        text CHECK (length(reason) <= 5000),
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX task_events_task_idx ON task_events (task_id, id);
CREATE INDEX task_events_action_idx ON task_events (action, at);

CREATE FUNCTION task_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'task_events is append-only';
END
$$;
CREATE TRIGGER task_events_append_only BEFORE UPDATE OR DELETE ON task_events
    FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION task_events_append_only();

-- Files attached to a task (or to one of its events).
CREATE TABLE task_attachments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    event_id     bigint REFERENCES task_events (id),
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type text NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    sha256       text NOT NULL REFERENCES files (sha256),
    uploaded_by  text NOT NULL,
    uploaded_at  timestamptz NOT NULL
);
CREATE INDEX task_attachments_task_idx ON task_attachments (task_id, id);

-- The moments at 50/100/150% of the sign-for and handling limits. The scheduler fires each once:
-- `fired_at` is set in the same transaction as the event it writes.
CREATE TABLE task_checkpoints (
    task_id      bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    clock        text NOT NULL CHECK (clock IN ('sign', 'handle')),
    stage        text NOT NULL CHECK (stage IN ('remind', 'supervise', 'escalate')),
    due_at       timestamptz NOT NULL,
    fired_at     timestamptz,
    cancelled_at timestamptz,
    PRIMARY KEY (task_id, clock, stage)
);
CREATE INDEX task_checkpoints_due_idx ON task_checkpoints (due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;

CREATE TABLE task_extensions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id       bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL,
    reason        text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 2000),
    requested_due timestamptz NOT NULL,
    decision      text CHECK (decision IN ('approved', 'refused')),
    decided_by    text,
    decided_at    timestamptz,
    note          text CHECK (length(note) <= 2000),
    CHECK ((decision IS NULL) = (decided_at IS NULL))
);
CREATE UNIQUE INDEX task_extensions_pending_idx ON task_extensions (task_id) WHERE decision IS NULL;

-- Warnings: triage. `item` is filled from the rule that raised it; a warning dispatched or merged
-- points at its task; nobody acknowledging a warning in time escalates it once.
ALTER TABLE warnings
    ADD COLUMN item             text,
    ADD COLUMN acknowledged_at  timestamptz,
    ADD COLUMN acknowledged_by  text,
    ADD COLUMN ack_escalated_at timestamptz,
    -- Automatic dispatch found no responsible department: a person must triage it.
    ADD COLUMN auto_dispatch_failed_at timestamptz,
    ADD COLUMN task_id          bigint REFERENCES tasks (id) ON DELETE SET NULL,
    ADD COLUMN false_positive   boolean NOT NULL DEFAULT false;
ALTER TABLE warnings DROP CONSTRAINT warnings_resolution_check;
ALTER TABLE warnings ADD CONSTRAINT warnings_resolution_check
    CHECK (resolution IN ('cleared', 'manual', 'expired', 'false_positive'));
CREATE INDEX warnings_task_idx ON warnings (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX warnings_unacknowledged_idx ON warnings (first_seen)
    WHERE resolved_at IS NULL AND acknowledged_at IS NULL AND ack_escalated_at IS NULL AND task_id IS NULL;

CREATE FUNCTION warnings_item_from_rule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.item IS NULL AND NEW.event LIKE 'rule:%' THEN
        SELECT r.item INTO NEW.item FROM rules r WHERE 'rule:' || r.id = NEW.event;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER warnings_item_from_rule BEFORE INSERT ON warnings
    FOR EACH ROW EXECUTE FUNCTION warnings_item_from_rule();

-- Escalations of warnings nobody acknowledged (notifications fan out from here).
CREATE TABLE warning_escalations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    warning_id bigint NOT NULL REFERENCES warnings (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    reason     text NOT NULL
);

-- Complaints turned into tasks; the complaint's public status follows its task. The callback
-- (回访) records whether the complainant was satisfied.
ALTER TABLE complaints
    ADD COLUMN task_id         bigint REFERENCES tasks (id) ON DELETE SET NULL,
    ADD COLUMN callback_result text CHECK (callback_result IN ('satisfied', 'basically_satisfied', 'dissatisfied')),
    ADD COLUMN callback_at     timestamptz,
    ADD COLUMN callback_by     text;
CREATE INDEX complaints_task_idx ON complaints (task_id) WHERE task_id IS NOT NULL;
