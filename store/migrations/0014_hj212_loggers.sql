-- HJ 212-2017 data loggers are devices: identified by their MN (unique), authenticated by their PW,
-- which is kept only as a SHA-256 digest (checked once per TCP connection, so no slow hash is needed).
ALTER TABLE devices
    ADD COLUMN hj212_mn text UNIQUE CHECK (hj212_mn ~ '^[A-Za-z0-9_-]{1,64}$'),
    ADD COLUMN hj212_pw_sha256 bytea CHECK (length(hj212_pw_sha256) = 32),
    ADD CONSTRAINT devices_hj212_both CHECK ((hj212_mn IS NULL) = (hj212_pw_sha256 IS NULL));

