-- Commands sent to devices (remote configuration) and what the devices answered.
-- The platform writes a row when it sends; ingest fills in the answer from the cmd/ack topic.
CREATE TABLE device_commands (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    device_key  integer NOT NULL REFERENCES devices (key),
    kind        text NOT NULL,
    body        jsonb NOT NULL,
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    acked_at    timestamptz,
    ok          boolean,
    error       text,
    -- The device's settings after applying the command.
    state       jsonb
);
CREATE INDEX device_commands_device_idx ON device_commands (device_key, created_at DESC);

-- The edge agent's health figures arrive as ordinary samples of the device.
INSERT INTO metrics (key, name_zh, name_en, unit, valid_min, valid_max) VALUES
    ('agent.queue_depth',       '边缘缓存待确认批次', 'Edge queue depth (batches)',           '批', 0, NULL),
    ('agent.unacked_oldest_s',  '最早未确认数据时长', 'Oldest unacknowledged batch age',      's',  0, NULL),
    ('agent.dropped',           '边缘缓存溢出丢弃批次', 'Batches dropped by the disk budget', '批', 0, NULL),
    ('agent.source_errors',     '传感器读取错误次数', 'Source read errors',                   '次', 0, NULL)
ON CONFLICT (key) DO NOTHING;
