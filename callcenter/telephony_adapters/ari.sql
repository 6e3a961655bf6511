-- The ARI adapter's statements: what it compares with Asterisk after a reconnect.

-- open_calls_of_peer --
-- Calls of one peer ($1: 'ari:%') that are not over: waiting (the small
-- waiting table) or connected (the partial index on connected calls).
SELECT c.external_id
  FROM waiting_calls w JOIN calls c ON c.id = w.call_id
 WHERE c.external_id LIKE $1
UNION ALL
SELECT c.external_id
  FROM calls c
 WHERE c.state = 'connected' AND c.external_id LIKE $1

-- ended_calls --
-- Which of these calls ($1: external ids) have ended on our side.
SELECT external_id, state
  FROM calls
 WHERE external_id = ANY ($1::text[])
   AND state IN ('completed', 'abandoned', 'transferred')
