-- The audit trail: every change made by a person or by the system, append-only and hash-chained.
--
-- `seq` has no gaps: the writer (`offsite_store::audit::AuditLog`) assigns it under an advisory lock
-- and inserts whole batches in one transaction. `hash` is SHA-256 over a canonical encoding of the
-- row and `prev_hash` (the previous row's hash; 32 zero bytes for seq 1), see `audit.rs`.
-- The chain head is also written to `<data_dir>/audit/anchors.log` so that a truncation or a
-- consistent rewrite (possible once the trigger below is disabled) is detected by `audit verify`.

CREATE TABLE audit_events (
    seq         bigint PRIMARY KEY CHECK (seq >= 1),
    at          timestamptz NOT NULL,
    -- A username, or `system:<component>`.
    actor       text NOT NULL,
    actor_ip    text,
    -- e.g. `rule.update`, `warning.resolve`, `user.login`.
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text,
    before      jsonb,
    after       jsonb,
    prev_hash   bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea NOT NULL CHECK (length(hash) = 32)
);

CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq);
CREATE INDEX audit_events_action_idx ON audit_events (action text_pattern_ops, seq);
CREATE INDEX audit_events_entity_idx ON audit_events (entity, entity_id, seq);

-- Append-only: rows cannot be changed or removed through SQL while the triggers are enabled.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
