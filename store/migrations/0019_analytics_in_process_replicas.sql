-- A replica fed in-process (the all-in-one, or `offsite ingest` with analytics beside it) is the
-- only one that sees its stream, so it takes shards from `offsite analytics` replicas; but a
-- second in-process replica must not take them from the first (each would analyse only what its
-- own ingest commits). The flag tells the lease round which live owners it must leave alone.
ALTER TABLE analytics_replicas ADD COLUMN in_process boolean NOT NULL DEFAULT false;
