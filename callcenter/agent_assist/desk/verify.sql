-- The agent's confirmation of who is calling: recorded once per call, with
-- who and when, and the pending link it releases.

-- lock_call --
-- Call $1 as a verify reads it, locked so two verifies (two tabs) take turns.
SELECT customer_id, identified_by, link_phone, link_customer_id, verified_at
  FROM calls WHERE id = $1 FOR UPDATE

-- mark_verified --
-- The first confirmation stands: a repeat changes neither who nor when.
UPDATE calls
   SET verified_by = coalesce(verified_by, 'agent:' || (SELECT name FROM agents WHERE id = $2)),
       verified_at = coalesce(verified_at, now())
 WHERE id = $1
RETURNING verified_by

-- customer_erased --
SELECT erased_at IS NOT NULL FROM customers WHERE id = $1

-- mark_linked --
-- The pending link is made: the call now reads as recognised by a link, as
-- the panel and the call record show it.
UPDATE calls SET identified_by = 'linked' WHERE id = $1
