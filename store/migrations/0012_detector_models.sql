-- Detector models (检测模型): every time the analytics tier starts using a model file (at start
-- or when a changed file is picked up), it records which one: the card's name and version, the
-- file's SHA-256 and the whole model.json. So "which model raised this warning" can be answered
-- from the database, and the portal can show the models in use without reading files.
--
-- A log: one row per load. Several processes running analytics each add their own rows.

CREATE TABLE detector_models (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The detector that loaded it, as named in warnings' evidence (`anomaly-onnx`).
    detector  text NOT NULL CHECK (length(detector) BETWEEN 1 AND 100),
    name      text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    version   text NOT NULL CHECK (length(version) BETWEEN 1 AND 100),
    sha256    text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    metadata  jsonb NOT NULL DEFAULT '{}',
    loaded_at timestamptz NOT NULL
);
CREATE INDEX detector_models_detector_idx ON detector_models (detector, loaded_at DESC, id DESC);
