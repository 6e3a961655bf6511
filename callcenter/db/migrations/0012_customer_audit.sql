-- Customer data rights: an audit log of every read and change of a customer's
-- record, and the mark an erasure leaves.
--
-- The service connects as the tables' owner, so REVOKE cannot stop it from
-- changing the log: a trigger refuses UPDATE, DELETE and TRUNCATE instead.
-- Entries hold ids, actions and who, never the customer's text (a detail is a
-- few field names or counts), so an erasure leaves nothing personal in them.
-- No foreign key to customers: an entry outlives anything done to the record,
-- and a TRUNCATE ... CASCADE of customers must not reach the log.
CREATE TABLE customer_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    customer_id  bigint NOT NULL,
    -- The principal's "role:name" (agent:ada, admin:bootstrap, system:retention).
    who          text NOT NULL,
    -- api: a REST request; panel: the agent's socket; cli: a command; job: a scheduled job.
    channel      text NOT NULL CHECK (channel IN ('api', 'panel', 'cli', 'job')),
    -- The remote address of the request or the agent's socket.
    remote       text,
    action       text NOT NULL CHECK (action ~ '^[a-z_]{1,40}$'),
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb
)
WITH (autovacuum_analyze_scale_factor = 1, autovacuum_analyze_threshold = 1000);

CREATE INDEX customer_audit_customer ON customer_audit (customer_id, id DESC);
CREATE INDEX customer_audit_who ON customer_audit (who, id DESC);
CREATE INDEX customer_audit_at ON customer_audit (at);

CREATE FUNCTION customer_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'customer_audit is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER customer_audit_no_change BEFORE UPDATE OR DELETE ON customer_audit
    FOR EACH ROW EXECUTE FUNCTION customer_audit_append_only();
CREATE TRIGGER customer_audit_no_truncate BEFORE TRUNCATE ON customer_audit
    FOR EACH STATEMENT EXECUTE FUNCTION customer_audit_append_only();

-- Set when the customer's identifiers and free text were erased (GDPR art. 17);
-- the row stays, so the calls' statistics keep their customer and tier.
ALTER TABLE customers ADD COLUMN erased_at timestamptz;
