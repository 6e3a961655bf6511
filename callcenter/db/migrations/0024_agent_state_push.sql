-- An agent's state goes out with the notification that says it changed
-- (issue 21: every change of an agent cost its panel a read, agent_snapshot,
-- one round trip per push: four of them in each call's life).
--
-- * agents.state_version counts the changes an agent's panel shows: a BEFORE
--   trigger raises it whenever one of those columns changes, whichever
--   statement changed it (offer, accept, end, wrap-up, presence, a supervisor).
-- * agent_snapshot(id) is what the panel shows, as jsonb: the agent, its
--   pending offer, the call it holds (with its columns prefixed held_). The
--   service reads it with this function too, so the payload and a read are
--   the same thing.
-- * A deferred constraint trigger sends it at COMMIT, when everything the
--   transaction changed is visible (an offer and the agent's new state are
--   written by different parts of one statement, or by different statements
--   of one transaction): 'agent:<id>:<snapshot>' on the service's channel.
--   Several changes of one agent in a transaction send the same text, which
--   PostgreSQL delivers once. A snapshot too long for a notification (8,000
--   bytes) goes as the bare 'agent:<id>', and the panel reads it.
--
-- A change the panel shows that is not in the agent's row either counts the row
-- changed (state_version + 1 by hand, after the call's lock: a callback's caller
-- picked up), so it goes out the same way, or publishes a bare 'agent:<id>' and
-- the panel reads (the held call's caller identified on this instance).
ALTER TABLE agents ADD COLUMN state_version bigint NOT NULL DEFAULT 0;

-- Times in UTC whatever the committing session's TimeZone, as asyncpg reads them.
CREATE FUNCTION agent_snapshot(agent bigint) RETURNS jsonb
    LANGUAGE sql STABLE
    SET timezone TO 'UTC'
AS $$
SELECT to_jsonb(s) FROM (
SELECT a.id, a.name, a.queues, a.overflow_queues, a.state, a.state_since, a.idle_since,
       a.call_id, a.wrap_up_until, p.last_seen_at, a.endpoint, a.state_version,
       o.offer_id, o.call_id AS offer_call_id, o.queue, o.offer_expires_at, o.enqueued_at,
       o.tier, o.credit_seconds, o.credit_explicit,
       o.customer_id, o.ani, o.customer_number, o.customer_name, o.provisional,
       o.callback_number, o.resumed_from, o.resumed_arrival, o.waited_before_seconds,
       h.id AS held_id, h.external_id AS held_external_id, h.queue AS held_queue,
       h.ani AS held_ani, h.customer_id AS held_customer_id,
       h.identified_by AS held_identified_by, h.tier AS held_tier,
       h.credit_seconds AS held_credit_seconds, h.credit_explicit AS held_credit_explicit,
       h.service_key AS held_service_key, h.state AS held_state, h.agent_id AS held_agent_id,
       h.ewt_at_enqueue AS held_ewt_at_enqueue, h.enqueued_at AS held_enqueued_at,
       h.connected_at AS held_connected_at, h.ended_at AS held_ended_at,
       h.end_reason AS held_end_reason, h.bumped_by AS held_bumped_by,
       h.customer_number AS held_customer_number, h.customer_name AS held_customer_name,
       h.provisional AS held_provisional,
       h.callback_number AS held_callback_number,
       h.callback_requested_at AS held_callback_requested_at,
       h.callback_attempts AS held_callback_attempts,
       h.callback_retry_at AS held_callback_retry_at,
       h.callback_answered_at AS held_callback_answered_at,
       h.resumed_from AS held_resumed_from, h.resumed_arrival AS held_resumed_arrival,
       h.waited_before_seconds AS held_waited_before_seconds
  FROM agents a
  LEFT JOIN LATERAL (
      SELECT c.id, c.external_id, c.queue, c.ani, c.customer_id, c.identified_by, c.tier,
             c.credit_seconds, c.credit_explicit, c.service_key, c.state, c.agent_id,
             c.ewt_at_enqueue, c.enqueued_at, c.connected_at, c.ended_at, c.end_reason,
             c.bumped_by, cu.customer_number, cu.name AS customer_name, cu.provisional,
             c.callback_number, c.callback_requested_at, c.callback_attempts,
             c.callback_retry_at, c.callback_answered_at, c.resumed_from, c.resumed_arrival,
             c.waited_before_seconds
        FROM calls c
        LEFT JOIN customers cu ON cu.id = c.customer_id
       WHERE c.id = a.call_id AND a.state IN ('on_call', 'wrap_up') AND c.state <> 'waiting'
  ) h ON true
  LEFT JOIN LATERAL (
      SELECT w.offer_id, w.call_id, w.queue, w.offer_expires_at, w.enqueued_at,
             c.tier, c.credit_seconds, c.credit_explicit,
             c.customer_id, c.ani, cu.customer_number, cu.name AS customer_name,
             cu.provisional, c.callback_number, c.resumed_from, c.resumed_arrival,
             c.waited_before_seconds
        FROM waiting_calls w
        JOIN calls c ON c.id = w.call_id
        LEFT JOIN customers cu ON cu.id = c.customer_id
       WHERE w.offered_to = a.id AND w.offer_id IS NOT NULL
       LIMIT 1
  ) o ON true
  LEFT JOIN agent_presence p ON p.agent_id = a.id
 WHERE a.id = agent
) s
$$;

CREATE FUNCTION agents_count_state() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF (OLD.name, OLD.queues, OLD.overflow_queues, OLD.state, OLD.state_since,
        OLD.idle_since, OLD.call_id, OLD.wrap_up_until, OLD.endpoint)
       IS DISTINCT FROM
       (NEW.name, NEW.queues, NEW.overflow_queues, NEW.state, NEW.state_since,
        NEW.idle_since, NEW.call_id, NEW.wrap_up_until, NEW.endpoint) THEN
        NEW.state_version := OLD.state_version + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER agents_count_state BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_count_state();

CREATE FUNCTION agents_push_state() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    message text := 'agent:' || NEW.id || ':' || agent_snapshot(NEW.id)::text;
BEGIN
    IF octet_length(message) >= 7900 THEN
        message := 'agent:' || NEW.id;
    END IF;
    PERFORM pg_notify('callcenter', message);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER agents_push_state AFTER UPDATE ON agents
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.state_version IS DISTINCT FROM NEW.state_version)
    EXECUTE FUNCTION agents_push_state();
