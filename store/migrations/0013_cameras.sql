-- Cameras (视频监控): what edge agents in camera mode report on the `event` channel. A camera is
-- known by its device and its id within the device; its row is the latest status. Snapshots are
-- JPEG evidence: the bytes live in the file store by SHA-256 (`files`), the row says what they show.

CREATE TABLE cameras (
    device_key    integer NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
    camera_id     text NOT NULL CHECK (camera_id ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    online        boolean NOT NULL DEFAULT false,
    -- Frames analysed per second over the agent's last period.
    fps           real NOT NULL DEFAULT 0,
    last_frame_at timestamptz,
    -- `{"state":"on","model":..}` or `{"state":"off","reason":..}` (wire `Detection`).
    detection     jsonb NOT NULL DEFAULT '{"state":"off","reason":""}',
    -- The zones the camera uses now (wire `Zone`s, normalised coordinates).
    zones         jsonb NOT NULL DEFAULT '[]',
    -- Health conditions raised now (`offline`, `black`, ...).
    health        text[] NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_key, camera_id)
);

CREATE TABLE snapshots (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_key integer NOT NULL,
    camera_id  text NOT NULL,
    at         timestamptz NOT NULL,
    sha256     text NOT NULL REFERENCES files (sha256),
    width      integer NOT NULL CHECK (width > 0),
    height     integer NOT NULL CHECK (height > 0),
    boxes      jsonb NOT NULL DEFAULT '[]',
    zones      jsonb NOT NULL DEFAULT '[]',
    -- The warning this picture is evidence for (retention keeps it while a task or case holds it).
    warning_id bigint REFERENCES warnings (id) ON DELETE SET NULL,
    FOREIGN KEY (device_key, camera_id) REFERENCES cameras (device_key, camera_id) ON DELETE CASCADE
);
CREATE INDEX snapshots_camera_idx ON snapshots (device_key, camera_id, at DESC, id DESC);
CREATE INDEX snapshots_at_idx ON snapshots (at);
CREATE INDEX snapshots_warning_idx ON snapshots (warning_id) WHERE warning_id IS NOT NULL;
CREATE INDEX snapshots_sha256_idx ON snapshots (sha256);

-- Camera messages already handled, by the device's `seq`: a redelivery is dropped. Pruned with
-- the snapshots (a device's seq only grows, so old entries are never needed again).
CREATE TABLE camera_messages_seen (
    device_key integer NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_key, seq)
);
CREATE INDEX camera_messages_seen_at_idx ON camera_messages_seen (seen_at);
