-- The claim announces the calls it locked and did not offer (issue 21; found
-- by a review of the wrap-up's and the available's own claims).
--
-- queue_offer_next (migration 0027) locks the head of every queue the chosen
-- agent serves (FOR UPDATE SKIP LOCKED, one probe per queue), and offers one
-- of them. Until it commits, a concurrent claim skips the other heads as
-- locked: an agent freed at the same time who serves one of those queues is
-- offered nothing, and the head it skipped is back, unchanged and unoffered,
-- at the commit. Before, every statement that freed an agent notified
-- ``free``, and the round that woke ran after the holder's commit (or after
-- the holder's own ``free``); now the wrap-up and the available claim for
-- themselves and wake no router unless a call moved (Router.freed), and the
-- enqueue that offers its own call wakes none either. So the claim itself now
-- says what it let go: for each head it locked and did not offer, it notifies
-- ``queue:<queue>`` on the channel ``callcenter`` (events.CHANNEL and
-- Event("queue", name).encode(); tests/integration/test_free_offers.py holds
-- them to these literals), delivered at its commit, when the lock goes. That
-- is a MOVED event: every router runs a round after it, and a statement that
-- skipped the head and is still to commit sees it after its mark
-- (Router.freed), so a round follows either way.
--
-- Only when the agent serves two queues or more with calls waiting in both
-- does the claim lock more than it offers; the common answers (nothing, or
-- one queue's head) notify nothing more than before. Same signature, same
-- answers: an instance running the code of before keeps working.
CREATE OR REPLACE FUNCTION queue_offer_next(claim boolean)
    RETURNS TABLE (offer_id bigint, call_id bigint, agent_id bigint,
                   expires_at timestamptz, queue text, more boolean)
    LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    IF NOT claim THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH live AS MATERIALIZED (
        SELECT array_agg(q.name) AS queues,
               array_agg(q.name) FILTER (
                   WHERE EXISTS (SELECT 1 FROM waiting_calls w
                                  WHERE w.queue = q.name AND w.offered_to IS NULL
                                    AND w.widen_at <= now())) AS widened
          FROM queues q
         WHERE EXISTS (SELECT 1 FROM waiting_calls w WHERE w.queue = q.name AND w.offered_to IS NULL)
    ), agent AS (
        SELECT a.id, a.queues, a.overflow_queues
          FROM agents a
         WHERE a.state = 'available'
           AND (SELECT queues FROM live) IS NOT NULL
           AND (a.queues && (SELECT queues FROM live)
                OR a.overflow_queues && (SELECT widened FROM live))
         ORDER BY a.idle_since, a.id
         LIMIT 1
         FOR UPDATE SKIP LOCKED
    ), served AS (
        SELECT q.queue, false AS overflow FROM agent, unnest(agent.queues) AS q (queue)
        UNION ALL
        SELECT q.queue, true FROM agent, unnest(agent.overflow_queues) AS q (queue)
    ), heads AS MATERIALIZED (
        -- Every head probed is locked here, whichever is offered.
        SELECT head.call_id, head.queue, head.service_key
          FROM served
         CROSS JOIN LATERAL (
            SELECT w.call_id, w.queue, w.service_key
              FROM waiting_calls w
             WHERE w.queue = served.queue AND w.offered_to IS NULL
               AND (NOT served.overflow OR w.widen_at <= now())
             ORDER BY w.service_key, w.call_id
             LIMIT 1
               FOR UPDATE SKIP LOCKED
         ) head
    ), pick AS (
        SELECT heads.call_id, heads.queue
          FROM heads
         ORDER BY heads.service_key, heads.call_id
         LIMIT 1
    ), offer AS (
        INSERT INTO call_offers (call_id, agent_id, expires_at)
        SELECT pick.call_id, agent.id, now() + make_interval(secs => q.offer_timeout_seconds)
          FROM pick, agent, queues q
         WHERE q.name = pick.queue
        RETURNING id, call_id, agent_id, expires_at
    ), marked AS (
        UPDATE waiting_calls w
           SET offered_to = offer.agent_id, offer_id = offer.id, offer_expires_at = offer.expires_at
          FROM offer
         WHERE w.call_id = offer.call_id
    ), busy AS (
        UPDATE agents a SET state = 'offered', state_since = now()
          FROM offer
         WHERE a.id = offer.agent_id
    ), let_go AS MATERIALIZED (
        -- The heads locked and not offered: back to the routers at commit.
        SELECT pg_notify('callcenter', 'queue:' || heads.queue)
          FROM heads, pick
         WHERE heads.call_id <> pick.call_id
    ), rest AS MATERIALIZED (
        SELECT array_agg(q.queue) AS queues,
               array_agg(q.queue) FILTER (
                   WHERE EXISTS (SELECT 1 FROM waiting_calls w
                                  WHERE w.queue = q.queue AND w.offered_to IS NULL
                                    AND w.widen_at <= now() AND w.call_id <> pick.call_id)) AS widened
          FROM pick, unnest((SELECT queues FROM live)) AS q (queue)
         WHERE q.queue <> pick.queue
            -- Another besides the picked one: two head entries of the claim index (an
            -- inequality on the call id made the planner scan the whole queue).
            OR (SELECT count(*) FROM (SELECT 1 FROM waiting_calls w
                                       WHERE w.queue = q.queue AND w.offered_to IS NULL
                                       ORDER BY w.service_key, w.call_id
                                       LIMIT 2) AS head) = 2
    )
    SELECT offer.id AS offer_id, offer.call_id, offer.agent_id, offer.expires_at, pick.queue,
           -- ``rest`` once (MATERIALIZED, read as one-row InitPlans): joined, the planner
           -- recomputed it for each available agent (0.8-3.4 ms on the routing benchmark).
           EXISTS (SELECT 1 FROM agents a
                    WHERE a.state = 'available' AND a.id <> offer.agent_id
                      AND (a.queues && (SELECT queues FROM rest)
                           OR a.overflow_queues && (SELECT widened FROM rest))) AS more
      FROM offer, pick
     -- Read so that it runs (a CTE nobody reads is not run); it never filters.
     WHERE (SELECT count(*) FROM let_go) >= 0;
END
$$;
