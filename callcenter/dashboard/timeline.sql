-- A call's timeline: every row the database already keeps about call $1, as
-- (at, kind, who, agent_id, agent_name, queue, detail). Each part reads by the
-- call's id (or its customer's id) through an index; nothing scans the history.

-- timeline --
WITH c AS (SELECT * FROM calls WHERE id = $1)
SELECT c.enqueued_at AS at, 'arrived' AS kind, NULL::text AS who,
       NULL::bigint AS agent_id, NULL::text AS agent_name,
       -- A moved call's row names its queue now; the first move says where it arrived.
       coalesce((SELECT m.detail ->> 'from_queue' FROM action_audit m
                  WHERE m.call_id = c.id AND m.action = 'move_call'
                  ORDER BY m.id LIMIT 1), c.queue) AS queue,
       jsonb_build_object('tier', c.tier, 'identified_by', c.identified_by,
                          'ewt_seconds', c.ewt_at_enqueue) AS detail
  FROM c
UNION ALL
SELECT o.offered_at, 'offered', NULL, o.agent_id, ag.name, NULL,
       jsonb_build_object('offer_id', o.id)
  FROM call_offers o
  JOIN agents ag ON ag.id = o.agent_id
 WHERE o.call_id = $1
UNION ALL
SELECT o.ended_at, o.result, NULL, o.agent_id, ag.name, NULL,
       jsonb_build_object('offer_id', o.id)
  FROM call_offers o
  JOIN agents ag ON ag.id = o.agent_id
 WHERE o.call_id = $1 AND o.result IS NOT NULL AND o.ended_at IS NOT NULL
UNION ALL
SELECT a.at, a.action, a.who, a.agent_id, ag.name, a.queue, a.detail
  FROM action_audit a
  LEFT JOIN agents ag ON ag.id = a.agent_id
 WHERE a.call_id = $1
UNION ALL
-- The caller's tier pinned or unpinned while the call was in the queue.
SELECT ca.at, ca.action, ca.who, NULL, NULL, NULL, ca.detail
  FROM c
  JOIN customer_audit ca ON ca.customer_id = c.customer_id
 WHERE ca.action IN ('pin_tier', 'unpin_tier')
   AND ca.at >= c.enqueued_at AND ca.at <= coalesce(c.ended_at, now())
UNION ALL
SELECT c.ended_at, 'ended', NULL, c.agent_id, ag.name, c.queue,
       jsonb_build_object('state', c.state, 'reason', c.end_reason)
  FROM c
  LEFT JOIN agents ag ON ag.id = c.agent_id
 WHERE c.ended_at IS NOT NULL
UNION ALL
SELECT an.answered_at, 'learning', NULL, an.agent_id, ag.name, NULL,
       jsonb_build_object('question', an.question_key, 'skipped', an.skipped)
  FROM answers an
  LEFT JOIN agents ag ON ag.id = an.agent_id
 WHERE an.call_id = $1
UNION ALL
SELECT c.wrapped_up_at, 'wrapped_up', NULL, c.agent_id, ag.name, NULL, '{}'::jsonb
  FROM c
  LEFT JOIN agents ag ON ag.id = c.agent_id
 WHERE c.wrapped_up_at IS NOT NULL
UNION ALL
-- A redial that resumed the place of the caller's dropped call.
SELECT c.enqueued_at, 'resumed', 'caller', NULL, NULL, NULL,
       jsonb_build_object('call_id', c.resumed_from,
                          'waited_before_seconds', round(c.waited_before_seconds::numeric, 1))
  FROM c
 WHERE c.resumed_from IS NOT NULL
UNION ALL
-- The caller took a callback, and every ring of it with how it went.
SELECT c.callback_requested_at, 'callback_requested', 'caller', NULL, NULL, NULL,
       jsonb_build_object('number', c.callback_number)
  FROM c
 WHERE c.callback_requested_at IS NOT NULL
UNION ALL
SELECT cb.started_at, 'callback_rang', NULL, cb.agent_id, ag.name, NULL,
       jsonb_build_object('number', cb.number, 'result', cb.result, 'cause', cb.cause)
  FROM callback_attempts cb
  LEFT JOIN agents ag ON ag.id = cb.agent_id
 WHERE cb.call_id = $1
UNION ALL
-- The caller's line let go at the telephony peer (the releaser's record).
SELECT r.done_at, 'released', NULL, NULL, NULL, NULL, jsonb_build_object('state', r.state)
  FROM call_releases r
 WHERE r.call_id = $1 AND r.done_at IS NOT NULL AND r.state IN ('released', 'gone')
