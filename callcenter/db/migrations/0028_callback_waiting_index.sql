-- The calls that wait for their callback, by customer: a small partial index.
--
-- Why (issue 21): a caller recognised by their phone, in a queue that offers
-- callbacks, may be ringing in again while a call of theirs waits for its
-- callback, and that call's place is then taken over. The takeover must lock
-- the waiting call first (``lock_waiting_callback``), so the enqueue ran in a
-- transaction of its own: BEGIN, the lock, the enqueue, COMMIT, four round
-- trips where one does, on every such call (69 % of the demo's traffic) while
-- almost none of them has a callback waiting. The first look-up of a call now
-- says whether each phone candidate has a call waiting for its callback
-- (``callback_waiting`` in ``peer_call_identify`` and ``known_call_identify``),
-- and the transaction is taken only when one has. This index makes that probe
-- one index look-up, and serves the lock's own search as well.
CREATE INDEX calls_callback_waiting ON calls (customer_id, queue)
    WHERE state = 'waiting' AND callback_number IS NOT NULL;

-- Whether customer $1 has a call waiting for its callback: the probe both first
-- look-ups make, in one place (a one-query LANGUAGE sql function is inlined).
CREATE FUNCTION callback_waiting(customer bigint) RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM calls v
                    WHERE v.customer_id = callback_waiting.customer AND v.state = 'waiting'
                      AND v.callback_number IS NOT NULL)
$$;
