-- Analytics as its own tier with N replicas (issue 11) that lose and double nothing across a
-- SIGKILL (issue 10). A sample's shard is device_key % <shard count>; one replica at a time owns
-- a shard through a lease, and the checkpoint says up to which received_at the owner has
-- certainly analysed that shard's samples (a new owner replays from there).
CREATE TABLE analytics_shards (
    shard       integer PRIMARY KEY CHECK (shard >= 0),
    owner       text,
    lease_until timestamptz,
    -- NULL: never analysed; a new owner replays its maximum window.
    checkpoint  timestamptz,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

-- Live replicas (heartbeats): a replica's fair share is ceil(shards / live replicas).
CREATE TABLE analytics_replicas (
    replica    text PRIMARY KEY,
    seen_until timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);

-- Replay reads a shard's samples by received_at. Rows arrive in nearly received_at order, so a
-- BRIN index finds them for next to no write cost on the ingest path.
CREATE INDEX samples_received_brin ON samples USING brin (received_at);

-- The latest episode of a dedup key (open or resolved), checked before a replayed raise opens one.
CREATE INDEX warnings_dedup_latest_idx ON warnings (dedup_key, id DESC);
