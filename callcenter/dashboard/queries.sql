-- The supervisor dashboard's reads. Every one is bounded: the buckets read
-- only rows stamped from $1 on, through an index on that stamp (0002, 0014);
-- the live ones read the waiting calls and the agents, which are as many as
-- are waiting and working now, never the history.

-- buckets --
-- The calls of queues $3 stamped from $1 on, by bucket of $2 seconds (index =
-- floor(epoch / $2), see callcenter.dashboard.buckets), per queue and tier,
-- and per agent for the calls it answered; with the database clock.
WITH rows AS (
    SELECT c.queue, coalesce(c.tier, 'unknown') AS tier, 0::bigint AS agent_id,
           floor(extract(epoch FROM c.enqueued_at) / $2)::bigint AS b,
           1 AS offered, 0 AS answered, 0 AS in_sl, 0::float8 AS wait,
           0 AS abandoned, 0::float8 AS abandoned_value, 0 AS learned, 0 AS skipped,
           0 AS handled, 0 AS left_unanswered
      FROM calls c
     WHERE c.queue = ANY ($3::text[]) AND c.enqueued_at >= $1
    UNION ALL
    SELECT c.queue, coalesce(c.tier, 'unknown'), 0,
           floor(extract(epoch FROM c.connected_at) / $2)::bigint,
           0, 1,
           (c.connected_at - c.enqueued_at
              <= make_interval(secs => coalesce(q.service_level_seconds, 20)))::int,
           extract(epoch FROM c.connected_at - c.enqueued_at)::float8,
           0, 0, 0, 0, 0, 0
      FROM calls c
      LEFT JOIN queues q ON q.name = c.queue
     WHERE c.queue = ANY ($3::text[]) AND c.connected_at >= $1
    UNION ALL
    SELECT '', '', c.agent_id, floor(extract(epoch FROM c.connected_at) / $2)::bigint,
           0, 0, 0, 0, 0, 0, 0, 0, 1, 0
      FROM calls c
     WHERE c.queue = ANY ($3::text[]) AND c.connected_at >= $1 AND c.agent_id IS NOT NULL
    UNION ALL
    -- Ended while waiting (never answered): abandoned, or transferred from the queue.
    -- A callback whose caller rang in again did not leave: the new call has its place.
    SELECT c.queue, coalesce(c.tier, 'unknown'), 0,
           floor(extract(epoch FROM c.ended_at) / $2)::bigint,
           0, 0, 0, 0, (c.state = 'abandoned')::int,
           CASE WHEN c.state = 'abandoned'
                THEN greatest(coalesce(cu.lifetime_value - cu.cost_to_serve, 0), 0)::float8
                ELSE 0 END,
           0, 0, 0, 1
      FROM calls c
      LEFT JOIN customers cu ON cu.id = c.customer_id
     WHERE c.queue = ANY ($3::text[]) AND c.ended_at >= $1 AND c.connected_at IS NULL
       AND c.end_reason IS DISTINCT FROM 'rang_again'
    UNION ALL
    SELECT c.queue, coalesce(c.tier, 'unknown'), 0,
           floor(extract(epoch FROM a.answered_at) / $2)::bigint,
           0, 0, 0, 0, 0, 0, (NOT a.skipped)::int, a.skipped::int, 0, 0
      FROM answers a
      JOIN calls c ON c.id = a.call_id
     WHERE a.answered_at >= $1
)
SELECT extract(epoch FROM now())::float8 AS now, r.*
  FROM (SELECT 1) AS clock
  LEFT JOIN (
      SELECT queue, tier, agent_id, b,
             sum(offered)::int AS offered, sum(answered)::int AS answered,
             sum(in_sl)::int AS in_sl, sum(wait)::float8 AS wait_sum,
             max(wait) FILTER (WHERE answered = 1)::float8 AS wait_max,
             sum(abandoned)::int AS abandoned, sum(abandoned_value)::float8 AS abandoned_value,
             sum(learned)::int AS learned, sum(skipped)::int AS skipped,
             sum(handled)::int AS handled, sum(left_unanswered)::int AS left_unanswered
        FROM rows
       GROUP BY queue, tier, agent_id, b
  ) AS r ON true

-- waiting_groups --
-- What waits now, per queue and tier: how many, how many are being offered,
-- the oldest arrival, and the callers' value (net value, as the tiers use it).
SELECT w.queue, coalesce(c.tier, 'unknown') AS tier, count(*)::int AS waiting,
       (count(*) FILTER (WHERE w.offered_to IS NOT NULL))::int AS offering,
       (count(*) FILTER (WHERE c.callback_number IS NOT NULL))::int AS callbacks,
       extract(epoch FROM now() - min(w.enqueued_at))::float8 AS longest_wait,
       sum(greatest(coalesce(cu.lifetime_value - cu.cost_to_serve, 0), 0))::float8 AS value
  FROM waiting_calls w
  JOIN calls c ON c.id = w.call_id
  LEFT JOIN customers cu ON cu.id = c.customer_id
 GROUP BY 1, 2

-- callbacks_set_aside --
-- Callbacks out of their queue until their retry, after a ring nobody answered
-- (the partial index of due retries).
SELECT queue, count(*)::int AS n FROM calls WHERE callback_retry_at IS NOT NULL GROUP BY queue

-- calls_ahead --
-- For each (queue $1[i], credit $2[i], offset $3[i]): how many waiting calls a
-- new caller with that credit would wait behind (as queue's calls_ahead).
SELECT t.queue, t.credit,
       (SELECT count(*) FROM waiting_calls w
         WHERE w.queue = t.queue
           AND w.service_key < queue_service_key(now(), t.credit, t.off))::int AS ahead
  FROM unnest($1::text[], $2::float8[], $3::float8[]) AS t (queue, credit, off)

-- waiting_list --
-- The head of each queue in serving order (at most $1 per queue), with who
-- waits and why they are where they are.
SELECT q.name AS queue, h.*
  FROM queues q
 CROSS JOIN LATERAL (
     SELECT w.call_id, w.service_key, w.enqueued_at, w.offered_to,
            extract(epoch FROM now() - w.enqueued_at)::float8 AS waited,
            c.external_id, c.ani, c.tier, c.credit_seconds, c.credit_explicit, c.bumped_by,
            c.customer_id, cu.customer_number, cu.name AS customer_name, cu.provisional,
            greatest(coalesce(cu.lifetime_value - cu.cost_to_serve, 0), 0)::float8 AS value,
            c.callback_number IS NOT NULL AS callback, c.resumed_from IS NOT NULL AS resumed
       FROM waiting_calls w
       JOIN calls c ON c.id = w.call_id
       LEFT JOIN customers cu ON cu.id = c.customer_id
      WHERE w.queue = q.name
      ORDER BY w.service_key, w.call_id
      LIMIT $1
 ) h
 ORDER BY q.name, h.service_key, h.call_id

-- overtaken --
-- The bound, checked on what waits now: calls with a call ahead of them that
-- arrived more than the queue's bound ($2[i] seconds for queue $1[i]) later.
-- The value policy promises none; a count above 0 is a fault to look into.
-- A redial that resumed a dropped call arrived, for the bound, when that call did.
SELECT t.queue,
       (SELECT count(*) FROM (
            SELECT a.arrival,
                   max(a.arrival) OVER (ORDER BY a.service_key, a.call_id
                                        ROWS BETWEEN UNBOUNDED PRECEDING
                                                 AND 1 PRECEDING) AS latest_ahead
              FROM (SELECT w.call_id, w.service_key,
                           coalesce(c.resumed_arrival, w.enqueued_at) AS arrival
                      FROM waiting_calls w JOIN calls c ON c.id = w.call_id
                     WHERE w.queue = t.queue) a) o
         WHERE o.latest_ahead > o.arrival + make_interval(secs => t.bound))::int AS overtaken
  FROM unnest($1::text[], $2::float8[]) AS t (queue, bound)

-- agents --
-- Every agent now: state, since when, its call and caller, when last seen.
SELECT a.id, a.name, a.queues, a.state, a.state_since, a.call_id,
       extract(epoch FROM now() - a.state_since)::float8 AS in_state,
       p.last_seen_at, c.queue AS call_queue, c.tier AS call_tier,
       cu.name AS customer_name, cu.customer_number
  FROM agents a
  LEFT JOIN agent_presence p ON p.agent_id = a.id
  LEFT JOIN calls c ON c.id = a.call_id
  LEFT JOIN customers cu ON cu.id = c.customer_id
 WHERE a.removed_at IS NULL
 ORDER BY a.name
