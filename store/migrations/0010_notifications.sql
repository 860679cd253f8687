-- Notifications (通知): an in-app notification center per user, outbound channels per department
-- (generic webhook, WeCom and DingTalk group robots, e-mail) and the delivery outbox.
--
-- The workflow only writes events (task_events, warnings, warning_escalations). The fan-out in
-- `offsite_store::notifications` turns new source rows into notifications and deliveries in ONE
-- transaction that also moves its cursors, so an event is notified exactly once whatever crashes;
-- the notify worker then delivers each delivery at least once, recording every attempt.

CREATE TABLE notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind ~ '^[a-z_]{1,40}$'),
    title_zh   text NOT NULL CHECK (length(title_zh) <= 300),
    title_en   text NOT NULL CHECK (length(title_en) <= 300),
    body_zh    text NOT NULL DEFAULT '' CHECK (length(body_zh) <= 2000),
    body_en    text NOT NULL DEFAULT '' CHECK (length(body_en) <= 2000),
    -- Where the UI opens it: `/tasks/<id>` or `/warnings/<id>`.
    link       text,
    task_id    bigint REFERENCES tasks (id) ON DELETE CASCADE,
    warning_id bigint REFERENCES warnings (id) ON DELETE CASCADE,
    -- The row it was made from ('task_event', 'warning', 'warning_escalation'); the unique
    -- constraint makes a second fan-out of the same row write nothing.
    source     text NOT NULL,
    source_id  bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz,
    CONSTRAINT notifications_once UNIQUE (source, source_id, user_id)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id DESC);
-- A user's unread list and count (the bell in the UI asks often).
CREATE INDEX notifications_unread_idx ON notifications (user_id, id DESC) WHERE read_at IS NULL;

-- Outbound channels of a department. The URL carries the robots' keys (WeCom `key`, DingTalk
-- `access_token`); `secret` signs webhooks (HMAC-SHA256) and DingTalk requests. E-mail goes
-- through the installation's SMTP server to `recipients`. `events` lists the notification kinds the
-- channel receives.
CREATE TABLE notification_channels (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    department_id bigint NOT NULL REFERENCES departments (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('webhook', 'wecom', 'dingtalk', 'email')),
    name          text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    url           text CHECK (url ~ '^https?://' AND length(url) <= 2000),
    secret        text CHECK (length(secret) BETWEEN 1 AND 500),
    recipients    text[] NOT NULL DEFAULT '{}',
    events        text[] NOT NULL CHECK (cardinality(events) >= 1),
    enabled       boolean NOT NULL DEFAULT true,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'email') = (url IS NULL)),
    CHECK ((kind = 'email') = (cardinality(recipients) > 0))
);
CREATE INDEX notification_channels_department_idx ON notification_channels (department_id);

-- The outbox: one row per (channel, source row). The worker claims due rows (leasing them by
-- moving `next_attempt_at`), sends, and records the attempt; after the last attempt it gives up
-- (`failed_at`).
CREATE TABLE notification_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind ~ '^[a-z_]{1,40}$'),
    -- NULL for a channel test.
    source          text,
    source_id       bigint,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    failed_at       timestamptz,
    -- HTTP status or SMTP reply code of the last attempt.
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_deliveries_once UNIQUE (channel_id, source, source_id),
    CHECK (delivered_at IS NULL OR failed_at IS NULL)
);
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX notification_deliveries_channel_idx ON notification_deliveries (channel_id, id DESC);

-- Every attempt, successful or not.
CREATE TABLE notification_delivery_attempts (
    delivery_id bigint NOT NULL REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt >= 1),
    at          timestamptz NOT NULL,
    ok          boolean NOT NULL,
    status      integer,
    error       text,
    PRIMARY KEY (delivery_id, attempt)
);

-- The fan-out's position in each source: every row with id <= last_id has been handled. Rows
-- above it that were already handled are listed in notification_fanout_seen, because identity
-- values are not committed in order (a transaction holding a lower id may commit after a higher
-- one was read); the cursor moves past a row only once it has been handled for a while.
CREATE TABLE notification_cursors (
    source     text PRIMARY KEY CHECK (source IN ('task_events', 'warnings', 'warning_escalations')),
    last_id    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- An installation that already has history starts from now, not with a flood of old events.
INSERT INTO notification_cursors (source, last_id)
SELECT 'task_events', coalesce(max(id), 0) FROM task_events
UNION ALL SELECT 'warnings', coalesce(max(id), 0) FROM warnings
UNION ALL SELECT 'warning_escalations', coalesce(max(id), 0) FROM warning_escalations;

CREATE TABLE notification_fanout_seen (
    source    text NOT NULL REFERENCES notification_cursors (source),
    source_id bigint NOT NULL,
    seen_at   timestamptz NOT NULL,
    PRIMARY KEY (source, source_id)
);
