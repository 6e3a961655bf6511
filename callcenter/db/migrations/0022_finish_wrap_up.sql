-- The agent's wrap-up stored in one round trip: the mark, the notes, the audit
-- entry, the answer with the customer's needs, and the agent free again with
-- its events (issue 21: it took BEGIN, the mark, three statements of the
-- answer, COMMIT and a separate wrap_up_done, seven round trips).
--
-- The answer is checked in Python (desk/wrap_up.py) against what one read
-- statement returned: the call's customer, the question shown on it, whether
-- that customer was merged away, the answer already stored on the call. This
-- function stores it only if all of that still holds once the call and the
-- customer are locked (each statement of a VOLATILE function reads with a
-- fresh snapshot, so it sees what was committed while it waited for a lock);
-- otherwise it writes nothing and says 'changed', and the caller reads and
-- checks again. The answer goes in before anything else is written, so a
-- conflict on it (an answer stored on the call meanwhile) also leaves nothing.
--
-- Locks in the order of the statements that lock the same rows: the call, the
-- customer (as a merge and store_answer lock it), the interaction (a merge
-- moves it after locking the customer), the agent (as ending a call does,
-- after its call).
--
-- Returns 'stored'; 'done' when the call was wrapped up already (a retry
-- raced the first one: nothing more to do); 'changed' (nothing written).
-- The agent is freed only if make_available and it is still in this call's
-- wrap-up (the clock may have ended it, or it is on its next call), as
-- set_available makes it, and agent_events go out on notify_channel at commit.
CREATE FUNCTION finish_wrap_up(
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
    SELECT customer_id, interaction_id, question_key, wrapped_up_at INTO held
      FROM calls
     WHERE id = wrap_call AND agent_id = wrap_agent
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 'changed';  -- no longer the agent's call (it went back to waiting)
    END IF;
    IF held.wrapped_up_at IS NOT NULL THEN
        RETURN 'done';
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
