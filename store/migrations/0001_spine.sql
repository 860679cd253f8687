-- The spine: devices, their status, the metric catalog, samples, dead letters.
-- One migration stream for the whole product; only the store crate runs it.

CREATE TABLE devices (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{1,32}$'),
    -- Compact surrogate used in the samples table (text ids cost ~30% of COPY speed).
    key             integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    object_id       text,
    -- SHA-256 of the device's random token; never the token itself.
    token_sha256    bytea NOT NULL CHECK (length(token_sha256) = 32),
    cert_serial     text,
    cert_not_after  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    rotated_at      timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX devices_name_idx ON devices (name);

-- Written by ingest from the status topic (retained online message / last will) and by batches.
CREATE TABLE device_status (
    device_key      integer PRIMARY KEY REFERENCES devices (key) ON DELETE CASCADE,
    online          boolean NOT NULL DEFAULT false,
    status_at       timestamptz,
    last_seen       timestamptz
);

CREATE TABLE metrics (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key         text NOT NULL UNIQUE CHECK (key ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name_zh     text,
    name_en     text,
    unit        text,
    valid_min   double precision,
    valid_max   double precision,
    CHECK (valid_min IS NULL OR valid_max IS NULL OR valid_min <= valid_max)
);

INSERT INTO metrics (key, name_zh, name_en, unit, valid_min, valid_max) VALUES
    ('pm10',        '可吸入颗粒物 PM10', 'PM10',                 'μg/m³', 0, 10000),
    ('pm25',        '细颗粒物 PM2.5',    'PM2.5',                'μg/m³', 0, 10000),
    ('tsp',         '总悬浮颗粒物',       'Total suspended particulates', 'μg/m³', 0, 50000),
    ('noise',       '噪声',              'Noise',                'dB(A)', 20, 150),
    ('temperature', '温度',              'Temperature',          '℃',     -60, 100),
    ('humidity',    '相对湿度',           'Relative humidity',    '%',     0, 100),
    ('wind_speed',  '风速',              'Wind speed',           'm/s',   0, 75),
    ('cold_temp',   '冷链温度',           'Cold-chain temperature', '℃',   -80, 40),
    ('cod',         '化学需氧量',         'Chemical oxygen demand', 'mg/L', 0, 10000),
    ('nh3n',        '氨氮',              'Ammonia nitrogen',     'mg/L',  0, 1000),
    ('ph',          'pH 值',             'pH',                   'pH',    0, 14),
    ('flow',        '流量',              'Flow',                 'm³/h',  0, 1000000),
    ('people',      '人数',              'People count',         '人',    0, 10000),
    ('queue',       '排队人数',           'Queue length',         '人',    0, 10000),
    ('voltage',     '电压',              'Voltage',              'V',     0, 1000),
    ('current',     '电流',              'Current',              'A',     0, 10000);

-- Samples: one row per (device, metric, device time), however often delivered.
-- With TimescaleDB a hypertable with compression; otherwise native daily range partitions that the
-- store creates ahead and drops after the retention period.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'timescaledb is installed but cannot be loaded (%); using native partitions', SQLERRM;
        END;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        CREATE TABLE samples (
            device_key  integer NOT NULL,
            metric_id   integer NOT NULL,
            ts          timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            value       double precision NOT NULL,
            quality     smallint NOT NULL DEFAULT 0,
            PRIMARY KEY (device_key, metric_id, ts)
        );
        PERFORM create_hypertable('samples', 'ts', chunk_time_interval => interval '1 day');
        EXECUTE 'ALTER TABLE samples SET (timescaledb.compress, timescaledb.compress_segmentby = ''device_key, metric_id'')';
        PERFORM add_compression_policy('samples', interval '7 days');
    ELSE
        CREATE TABLE samples (
            device_key  integer NOT NULL,
            metric_id   integer NOT NULL,
            ts          timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            value       double precision NOT NULL,
            quality     smallint NOT NULL DEFAULT 0,
            PRIMARY KEY (device_key, metric_id, ts)
        ) PARTITION BY RANGE (ts);
    END IF;
END
$$;

-- Latest value per (device, metric), upserted once per committed batch.
CREATE TABLE sample_latest (
    device_key  integer NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
    metric_id   integer NOT NULL REFERENCES metrics (id),
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    quality     smallint NOT NULL,
    PRIMARY KEY (device_key, metric_id)
);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    device_id   text,
    topic       text NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL,
    payload     bytea NOT NULL
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, received_at);
