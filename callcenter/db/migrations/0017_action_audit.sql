-- The audit log of what supervisors and admins do to calls, agents and queues:
-- bump, move, end a call, force an agent offline, change a queue. Until now
-- these left only a log line (and a bump its latest author on the call), so
-- "who moved this call?" could not be answered after the fact, nor shown in
-- the call's timeline. customer_audit (0012) keeps the customers' records
-- (reads, changes, pins) and is about one customer per entry; these actions
-- are about a call, an agent or a queue, often of no known customer.
--
-- Append-only like customer_audit, for the same reason (the service owns the
-- table, so a trigger refuses UPDATE, DELETE and TRUNCATE). Entries hold ids,
-- queue names, actions and the principal, never a caller's text: a call's end
-- reason stays on the call, where an erasure can reach it. No foreign keys:
-- an entry outlives what it is about.
CREATE TABLE action_audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    -- The principal's "role:name" from the session or token, never a name the client typed.
    who       text NOT NULL,
    channel   text NOT NULL CHECK (channel IN ('api', 'panel', 'cli', 'job')),
    remote    text,
    action    text NOT NULL CHECK (action ~ '^[a-z_]{1,40}$'),
    -- What it was about: a call, an agent, a queue (any that apply).
    call_id   bigint,
    agent_id  bigint,
    queue     text,
    detail    jsonb NOT NULL DEFAULT '{}'::jsonb
)
WITH (autovacuum_analyze_scale_factor = 1, autovacuum_analyze_threshold = 1000);

-- A call's timeline reads its entries by call; the rest for paging by who and time.
CREATE INDEX action_audit_call ON action_audit (call_id, id) WHERE call_id IS NOT NULL;
CREATE INDEX action_audit_who ON action_audit (who, id DESC);
CREATE INDEX action_audit_at ON action_audit (at);

CREATE FUNCTION action_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'action_audit is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER action_audit_no_change BEFORE UPDATE OR DELETE ON action_audit
    FOR EACH ROW EXECUTE FUNCTION action_audit_append_only();
CREATE TRIGGER action_audit_no_truncate BEFORE TRUNCATE ON action_audit
    FOR EACH STATEMENT EXECUTE FUNCTION action_audit_append_only();
