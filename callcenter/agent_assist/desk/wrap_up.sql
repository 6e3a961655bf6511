-- What the agent's desk reads and writes about its own calls: whose call it
-- is, and the wrap-up, stored once per call.

-- own_call --
-- Call $2 as agent $1 sees it: only a call the agent took is ever shown or
-- wrapped up by it. "Still its own" (connected, or ended and not yet wrapped
-- up) is decided by the caller of this statement.
SELECT c.id, c.state, c.customer_id, c.question_key, c.interaction_id, c.wrapped_up_at,
       c.ended_at, now() - c.ended_at AS since_end,
       a.state AS agent_state, a.call_id AS agent_call_id
  FROM calls c
  JOIN agents a ON a.id = c.agent_id
 WHERE c.id = $2 AND c.agent_id = $1

-- mark_wrapped_up --
-- Once per call: a retried wrap-up finds it done and changes nothing. The
-- notes and answer stored with it change the customer's record, so the same
-- statement writes the audit entry (agent $2 at socket address $3, detail $4),
-- and the notes $5 (none: null) on the call's contact, in one round trip.
WITH done AS (
    UPDATE calls SET wrapped_up_at = now()
     WHERE id = $1 AND wrapped_up_at IS NULL
    RETURNING id, interaction_id, customer_id
), audit AS (
    INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
    SELECT customer_id, $2, 'panel', $3, 'wrap_up',
           $4::jsonb || jsonb_build_object('call_id', id)
      FROM done
     WHERE customer_id IS NOT NULL
), notes AS (
    UPDATE interactions i SET notes = $5::text
      FROM done
     WHERE i.id = done.interaction_id AND $5::text IS NOT NULL
)
SELECT interaction_id, customer_id FROM done
