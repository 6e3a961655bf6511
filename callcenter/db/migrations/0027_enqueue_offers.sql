-- The router's one step, the claim of an offer, in one place for its two
-- callers (issue 21: the webhook took four round trips to an offer, the
-- enqueue and then the router's offer_next woken by its event):
--
-- * queue/queries.sql offer_next, the router's round: SELECT * FROM
--   queue_offer_next(true);
-- * queue/queries.sql enqueue: the statement that stores a new call runs the
--   claim itself once the call is in the queue, and returns the offer it made
--   to its instance's router (CallDesk's ``Offers``), which treats it as one of
--   its own (the timer, the count, a round when ``more``). The router's round
--   after the call's event is then saved when the offer is of that call: see
--   Router.dispatch for why no pair is left waiting.
--
-- The claim, as offer_next ran it (moved here unchanged). The longest-idle
-- available agent who has a call it may take gets the call with the smallest
-- service key among the queues it serves (overflow queues only for calls past
-- their widen time). Agent and call are locked with SKIP LOCKED, so concurrent
-- claims on any instance never pick the same agent or the same call. The
-- agent's new state, with the offer, goes out from the agents' trigger at
-- commit (migration 0024).
--
-- Most runs find nothing (the last of a round, an agent freed while no one
-- waits, a call enqueued while nobody is free), so that answer must be cheap:
-- the queues that have a call nobody is being offered are found first, one
-- probe of the claim index per queue, and when there are none the agents are
-- not read at all.
--
-- ``more``: whether, in this statement's snapshot, another available agent
-- serves a queue that still has an unoffered call besides the one just
-- offered (a superset of the pairs left: the router stops its round when it is
-- false instead of claiming once more to find nothing; see Router.dispatch for
-- why no pair is left waiting by that).
--
-- A plpgsql function, VOLATILE, because the enqueue needs two things of it:
--
-- * it must see the call the enqueue's own statement inserted before calling
--   it. A statement's sub-statements share one snapshot and do not see each
--   other's writes; each statement of a VOLATILE function runs after a command
--   counter increment, with a fresh snapshot, so it sees them (and whatever
--   other transactions committed meanwhile, as telephony_hung_up relies on,
--   migration 0020). The enqueue passes the function an argument computed from
--   the inserted waiting row, so it is called after that row is written.
--   tests/integration/test_enqueue_offer.py holds this.
-- * its plan is kept for the session, as the prepared statement's was (a
--   LANGUAGE sql function with a data-modifying statement is planned on every
--   call).
--
-- claim false: nothing is claimed and no row returned (the enqueue passes its
-- own conditions: a router to hand the offer to, no hang-up came first).
-- Locks as the statement took them: the agent, then the call's waiting row,
-- both SKIP LOCKED (queue/queries.sql's lock order).
CREATE FUNCTION queue_offer_next(claim boolean)
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
    ), pick AS (
        SELECT head.call_id, head.queue
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
         ORDER BY head.service_key, head.call_id
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
      FROM offer, pick;
END
$$;
