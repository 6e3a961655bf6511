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

-- wrap_up_call --
-- Call $2 as agent $1 wraps it up, with what an answer to question $3 (none:
-- null) is checked against, in the same round trip: own_call's columns, where
-- the call's customer was merged (null: it was not), and the answer to $3
-- stored on the call already, if any (a retry, or a different answer).
SELECT c.id, c.state, c.customer_id, c.question_key, c.interaction_id, c.wrapped_up_at,
       c.ended_at, now() - c.ended_at AS since_end,
       a.state AS agent_state, a.call_id AS agent_call_id,
       cu.merged_into, e.id IS NOT NULL AS answered, e.value, e.skipped
  FROM calls c
  JOIN agents a ON a.id = c.agent_id
  LEFT JOIN customers cu ON cu.id = c.customer_id
  LEFT JOIN answers e ON e.call_id = c.id AND e.question_key = $3
 WHERE c.id = $2 AND c.agent_id = $1

-- finish_wrap_up --
-- Once per call, what was checked against wrap_up_call (or against what this
-- instance's panel showed of the call, not read: migration 0026): the mark, the
-- audit entry, the notes, the answer and the agent free again, in one round trip
-- (migrations 0022 and 0026 say what it checks again, and in which order it locks).
-- With $15 (this instance's router takes the offer: WrapUpDesk._store), the
-- router's claim runs after a stored wrap-up that frees the agent ($12), which
-- it sees free; its offer comes back as offer_* (null: none), as the enqueue's.
SELECT w.outcome, o.offer_id, o.call_id AS offer_call_id, o.agent_id AS offer_agent_id,
       o.expires_at AS offer_expires_at, o.queue AS offer_queue, o.more AS offer_more
  FROM finish_wrap_up($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) AS w (outcome)
  LEFT JOIN LATERAL queue_offer_next($15 AND $12 AND w.outcome = 'stored') AS o ON true
