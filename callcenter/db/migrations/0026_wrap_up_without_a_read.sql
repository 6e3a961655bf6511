-- The wrap-up stored without reading the call first, when this instance built
-- the call's panel (issue 21: the wrap-up took the read wrap_up_call, then
-- finish_wrap_up; now, for a call whose panel was built here and whose agent
-- is in its wrap-up, only finish_wrap_up).
--
-- The hub remembers what it showed on the panel (the call, its customer, the
-- question) and that the agent's pushed state is this call's wrap-up; the
-- desk checks the answer against that and calls finish_wrap_up with it. A
-- guess can be wrong (a change the push has not brought yet, another tab on
-- another instance), so finish_wrap_up must refuse ('changed', writing
-- nothing) whatever the read would have refused or checked otherwise. It
-- already rechecked, under the locks, the agent's ownership, the wrap-up
-- mark, the customer and question the answer was checked against, the
-- merge and an answer already on the call (a retry or a different one). Two
-- things only the read's Python checks looked at are rechecked here too:
--
-- * the call has ended (a connected call is ended before its wrap-up is
--   stored; one the agent got back meanwhile is read again);
-- * it ended within the wrap-up window, wrap_up_window(): the exact twin of
--   desk/wrap_up.py's WRAP_UP_WINDOW (tests/integration/test_wrap_up_unread.py
--   checks they agree); change both in one commit.
--
-- Both only add 'changed' where the caller then reads: the read path's
-- answers are the same (the read it does next gives the error it always
-- gave). The signature is the same, so an instance running the code before
-- this migration keeps working against it.
CREATE FUNCTION wrap_up_window() RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT interval '1 hour' $$;

CREATE OR REPLACE FUNCTION finish_wrap_up(
    wrap_call bigint, wrap_agent bigint, seen_customer bigint,
    audit_who text, audit_remote text, audit_detail jsonb, new_notes text,
    answer_key text, answer_value jsonb, answer_skipped boolean, answered timestamptz,
    make_available boolean, notify_channel text, agent_events text[]
) RETURNS text
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    held record;
BEGIN
    SELECT customer_id, interaction_id, question_key, wrapped_up_at, ended_at INTO held
      FROM calls
     WHERE id = wrap_call AND agent_id = wrap_agent
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 'changed';  -- no longer the agent's call (it went back to waiting)
    END IF;
    IF held.wrapped_up_at IS NOT NULL THEN
        RETURN 'done';
    END IF;
    -- Still connected (ended_at is set exactly when the call ended), or ended too
    -- long ago: the caller reads, and ends the call or says it is too late.
    IF held.ended_at IS NULL OR held.ended_at < now() - wrap_up_window() THEN
        RETURN 'changed';
    END IF;

    IF answer_key IS NOT NULL THEN
        IF held.customer_id IS DISTINCT FROM seen_customer
           OR held.question_key IS DISTINCT FROM answer_key THEN
            RETURN 'changed';  -- another tab picked another caller for the call
        END IF;
        PERFORM 1 FROM customers
          WHERE id = seen_customer AND merged_into IS NULL
            FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            RETURN 'changed';  -- merged meanwhile
        END IF;
        INSERT INTO answers (customer_id, question_key, value, skipped, answered_at, call_id,
                             interaction_id, agent_id)
        VALUES (seen_customer, answer_key, answer_value, answer_skipped, answered, wrap_call,
                held.interaction_id, wrap_agent)
        ON CONFLICT (call_id, question_key) DO NOTHING;
        IF NOT FOUND THEN
            RETURN 'changed';  -- answered on the call meanwhile
        END IF;
        -- The needs profile keeps the latest value of every answered question (as
        -- the knowledge room's insert_answer; a test holds the two to one result).
        IF NOT answer_skipped THEN
            UPDATE customers
               SET needs = needs || jsonb_build_object(answer_key, answer_value),
                   updated_at = now()
             WHERE id = seen_customer;
        END IF;
    END IF;

    UPDATE calls SET wrapped_up_at = now() WHERE id = wrap_call;
    IF held.customer_id IS NOT NULL THEN
        INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
        VALUES (held.customer_id, audit_who, 'panel', audit_remote, 'wrap_up',
                audit_detail || jsonb_build_object('call_id', wrap_call));
    END IF;
    IF new_notes IS NOT NULL THEN
        UPDATE interactions SET notes = new_notes WHERE id = held.interaction_id;
    END IF;

    IF make_available THEN
        UPDATE agents
           SET state = 'available', state_since = now(), idle_since = now(), call_id = NULL,
               wrap_up_until = NULL
         WHERE id = wrap_agent AND state = 'wrap_up' AND call_id = wrap_call;
        IF FOUND THEN
            PERFORM pg_notify(notify_channel, p) FROM unnest(agent_events) AS p;
        END IF;
    END IF;
    RETURN 'stored';
END
$$;
