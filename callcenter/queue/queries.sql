-- The hold queue's statements.
--
-- The service key (the order of the queue) is computed in ONE place in
-- production: the SQL function queue_service_key(arrival, credit, offset),
-- created in callcenter/db/migrations/0009_service_key.sql and called by every
-- statement here that computes a key (enqueue, set_key, record_gone_call), with the database clock so every instance agrees. Its
-- exact Python twin is callcenter.queue.policy.service_key; a test
-- (tests/integration/test_service_key.py) holds the two equal. To change the
-- formula: a new migration that replaces the function, and policy.py, together.
-- The other statements (position, requeue_connected, move_to_queue, the claim)
-- only compare or carry a stored key; they never compute one.

-- queue_configs --
SELECT name, policy, credits, offset_seconds, offer_timeout_seconds, wrap_up_seconds,
       overflow_after_seconds, max_wait_seconds, overflow_queue, service_level_seconds,
       wrap_up_max_seconds, callback, redial_window_seconds
  FROM queues
 ORDER BY name

-- upsert_queue --
INSERT INTO queues (name, policy, credits, offset_seconds, offer_timeout_seconds,
                    wrap_up_seconds, overflow_after_seconds, max_wait_seconds, overflow_queue,
                    service_level_seconds, wrap_up_max_seconds, callback, redial_window_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (name) DO UPDATE
   SET policy = excluded.policy, credits = excluded.credits,
       offset_seconds = excluded.offset_seconds,
       offer_timeout_seconds = excluded.offer_timeout_seconds,
       wrap_up_seconds = excluded.wrap_up_seconds,
       overflow_after_seconds = excluded.overflow_after_seconds,
       max_wait_seconds = excluded.max_wait_seconds,
       overflow_queue = excluded.overflow_queue,
       service_level_seconds = excluded.service_level_seconds,
       wrap_up_max_seconds = excluded.wrap_up_max_seconds,
       callback = excluded.callback,
       redial_window_seconds = excluded.redial_window_seconds,
       updated_at = now()
RETURNING (xmax = 0) AS created

-- enqueue --
-- One statement: the call's record, its place in the queue, the router's one
-- step and the call's event (channel $12, delivered at commit), or nothing at
-- all when the peer's call id is already known (a retried webhook: no second
-- call, no second offer).
-- The router's step: with $22 (this instance's router takes the offer over:
-- CallDesk's ``Offers``; never inside a caller's transaction) and no hang-up
-- first, once the call is in the queue the statement runs the claim
-- (queue_offer_next, migration 0027, the one offer_next runs) and returns the
-- offer it made, any call's, as ``offer_*`` (null: none). The event is then
-- $23 (``offered:<queue>``, which wakes no router) when that offer is of this
-- very call, else $13 (``queue:<queue>``, which wakes every router): see
-- Router.dispatch for why no pair is left waiting either way.
-- ``ahead``: the calls a new call with credit $7 waits behind (queue_calls_ahead,
-- migration 0019, in this statement's snapshot: it was a round trip of its own);
-- the estimate stored with the call (queue_estimated_wait, migration 0023)
-- comes from it and the queue's rates: $9 staffed agents, $20 available, $21
-- the service rate (null: none).
-- $14, $15: the telephony peer and its call id, when an adapter handed it in.
-- Then ``hung_up`` says whether the peer's hang-up came first (a tombstone),
-- read under the peer call's lock with a fresh snapshot (telephony_hung_up,
-- migration 0020), so a hang-up racing this statement is never missed.
-- $16, $17: the phone and customer of a pending link (a typed customer number
-- from a phone that is not theirs), kept until the agent confirms who calls.
-- $18: the queue's redial window (null: off). A customer's call abandoned in
-- this queue within it, that no other call resumed yet, gives its arrival to
-- this one's key (``resumed_arrival``), so the redial takes its old place.
-- $19: a call of the same customer waiting for its callback (not being rung)
-- is taken over the same way: the caller rang in again, and ``incoming`` ends
-- the virtual call it replaces, in the same transaction.
-- Both only for a caller recognised by their phone: a customer number typed on a
-- keypad serves that one call, and must not take over someone's place.
-- $19 is on only inside the caller's transaction that locked that virtual
-- call first (``lock_waiting_callback``: waiting row, then call, as always).
-- Two redials at once: the second skips the dropped call the first has locked
-- (NO KEY: a row pointing at the call, a release being claimed, does not block).
WITH ahead AS MATERIALIZED (
    SELECT queue_calls_ahead($2, queue_service_key(now(), $7::float8, $8::float8)) AS n
), prior AS (
    SELECT p.id, p.state, coalesce(p.resumed_arrival, p.enqueued_at) AS arrival,
           extract(epoch FROM coalesce(p.ended_at, now()) - p.enqueued_at)::float8
             + coalesce(p.waited_before_seconds, 0) AS waited
      FROM calls p
     WHERE $4::bigint IS NOT NULL AND p.customer_id = $4 AND p.queue = $2
       AND ((p.state = 'abandoned' AND $18::float8 IS NOT NULL
             AND p.ended_at > now() - make_interval(secs => $18::float8))
            OR (p.state = 'waiting' AND $19::boolean AND p.callback_number IS NOT NULL))
       AND NOT EXISTS (SELECT 1 FROM calls r WHERE r.resumed_from = p.id)
     ORDER BY p.state = 'waiting' DESC, p.ended_at DESC
     LIMIT 1
       FOR NO KEY UPDATE OF p SKIP LOCKED
), new_call AS (
    INSERT INTO calls (external_id, queue, ani, customer_id, identified_by, tier,
                       credit_seconds, service_key, ewt_at_enqueue, peer, peer_call_id,
                       link_phone, link_customer_id, resumed_from, resumed_arrival,
                       waited_before_seconds)
    VALUES ($1, $2, $3, $4, $5, $6, $7,
            queue_service_key(coalesce((SELECT arrival FROM prior), now()), $7::float8,
                              $8::float8),
            queue_estimated_wait((SELECT n FROM ahead), $9::bigint, $20::bigint, $21::float8),
            $14, $15, $16, $17,
            (SELECT id FROM prior), (SELECT arrival FROM prior), (SELECT waited FROM prior))
    ON CONFLICT (external_id) DO NOTHING
    RETURNING id, queue, service_key, enqueued_at, resumed_from, resumed_arrival,
              waited_before_seconds, ewt_at_enqueue
), waiting AS (
    INSERT INTO waiting_calls (call_id, queue, service_key, enqueued_at, widen_at, give_up_at)
    SELECT id, queue, service_key, enqueued_at,
           enqueued_at + make_interval(secs => $10),
           enqueued_at + make_interval(secs => $11)
      FROM new_call
    RETURNING call_id
), stored AS MATERIALIZED (
    -- Read once the call and its waiting row are written (the join pulls both).
    SELECT n.*, CASE WHEN $14::text IS NOT NULL THEN telephony_hung_up($1) END AS hung_up
      FROM new_call n JOIN waiting w ON w.call_id = n.id
)
SELECT s.id, s.service_key, s.enqueued_at, s.resumed_from, s.resumed_arrival,
       s.waited_before_seconds, (SELECT state FROM prior) AS resumed_state, s.hung_up,
       (SELECT n FROM ahead) AS ahead, s.ewt_at_enqueue,
       o.offer_id, o.call_id AS offer_call_id, o.agent_id AS offer_agent_id,
       o.expires_at AS offer_expires_at, o.queue AS offer_queue, o.more AS offer_more,
       (SELECT count(*) FROM (SELECT pg_notify($12, CASE WHEN o.call_id = s.id THEN $23
                                                         ELSE $13 END)) AS n) AS notified
  FROM stored s
  -- The claim's argument comes from ``stored``: it runs after the call is in the
  -- queue and the hang-up was looked for, and sees the call (migration 0027).
  LEFT JOIN LATERAL queue_offer_next($22::boolean AND s.hung_up IS NOT TRUE) AS o ON true

-- call_id_by_external --
SELECT id FROM calls WHERE external_id = $1

-- known_call_identify --
-- A call handed in through the API: our call for its id $1 (``call_id``, null if
-- none: a repeat is answered from it), and with it the identification candidates
-- of phone $2 and typed customer number $3 (identify_candidates, migration 0023),
-- one per row, ``matched`` null when there are none. They were two round trips.
-- ``callback_waiting``: as in ``peer_call_identify``.
SELECT c.id AS call_id, k.matched, k.id, k.customer_number, k.name, k.tier, k.provisional,
       k.matched = 'phone' AND callback_waiting(k.id) AS callback_waiting
  FROM (VALUES (1)) AS one (x)
  LEFT JOIN calls c ON c.external_id = $1
  LEFT JOIN LATERAL identify_candidates($2, $3) AS k ON true

-- queue_rates --
-- What EWT is computed from: the answers and ended talk of queue $1 from
-- instant $2 (epoch seconds) on, by bucket of $3 seconds (index =
-- floor(epoch / $3); see callcenter.queue.rates), with the database clock and
-- the queue's staffing on every row. Each half reads recent index entries only.
WITH recent AS (
    SELECT floor(extract(epoch FROM connected_at) / $3)::bigint AS b,
           1 AS answered, 0 AS ended, 0::float8 AS talk
      FROM calls
     WHERE queue = $1 AND connected_at >= to_timestamp($2)
    UNION ALL
    SELECT floor(extract(epoch FROM ended_at) / $3)::bigint,
           0, 1, extract(epoch FROM ended_at - connected_at)::float8
      FROM calls
     WHERE queue = $1 AND ended_at >= to_timestamp($2) AND connected_at IS NOT NULL
)
SELECT extract(epoch FROM now())::float8 AS now,
       (SELECT count(*) FROM agents
         WHERE $1 = ANY (queues) AND state <> 'offline') AS staffed,
       (SELECT count(*) FROM agents
         WHERE $1 = ANY (queues) AND state = 'available') AS available,
       r.b, r.answered, r.ended, r.talk
  FROM (SELECT 1) AS clock
  LEFT JOIN (SELECT b, sum(answered)::int AS answered, sum(ended)::int AS ended,
                    sum(talk) AS talk
               FROM recent GROUP BY b) AS r ON true

-- call --
SELECT c.id, c.external_id, c.queue, c.ani, c.customer_id, c.identified_by, c.tier,
       c.credit_seconds, c.credit_explicit, c.service_key, c.state, c.agent_id,
       c.ewt_at_enqueue, c.enqueued_at, c.connected_at, c.ended_at, c.end_reason,
       c.bumped_by, w.offered_to, w.offer_id, w.offer_expires_at,
       cu.customer_number, cu.name AS customer_name, cu.provisional,
       c.callback_number, c.callback_requested_at, c.callback_attempts, c.callback_retry_at,
       c.callback_answered_at, c.resumed_from, c.resumed_arrival, c.waited_before_seconds
  FROM calls c
  LEFT JOIN waiting_calls w ON w.call_id = c.id
  LEFT JOIN customers cu ON cu.id = c.customer_id
 WHERE c.id = $1

-- lock_call --
-- Locks order: waiting_calls before calls, in every statement that takes both
-- (the claim and the accept take the waiting row first). A hang-up that locked
-- the call and then its waiting row deadlocked with an accept crossing it. The
-- one-time filter locks the waiting row, if the call has one, before the scan
-- of calls locks the call.
WITH w AS MATERIALIZED (
    SELECT call_id FROM waiting_calls WHERE call_id = $1 FOR UPDATE
)
SELECT id, queue, state, agent_id, customer_id, enqueued_at, connected_at, credit_explicit
  FROM calls WHERE id = $1 AND (SELECT count(*) FROM w) >= 0 FOR UPDATE

-- set_key --
-- A new credit (value changed, supervisor's bump): the key moves, arrival stays
-- (a redial's arrival is the one it resumed).
-- The waiting row is locked before the call (see lock_call).
WITH w AS MATERIALIZED (
    SELECT call_id FROM waiting_calls WHERE call_id = $1 FOR UPDATE
), c AS (
    UPDATE calls
       SET credit_seconds = $2, credit_explicit = $3,
           tier = coalesce($4, tier), customer_id = coalesce($5, customer_id),
           identified_by = coalesce($6, identified_by),
           service_key = queue_service_key(coalesce(resumed_arrival, enqueued_at), $2::float8,
                                       $7::float8)
     WHERE id = $1 AND (SELECT count(*) FROM w) >= 0
    RETURNING id, service_key
)
UPDATE waiting_calls w SET service_key = c.service_key FROM c WHERE w.call_id = c.id

-- set_pending_link --
-- The IVR's typed number named someone new: the pending link follows it (or
-- goes, when the number needs no link or names nobody).
UPDATE calls SET link_phone = $2, link_customer_id = $3 WHERE id = $1

-- set_bumped_by --
-- Who set a call's credit by hand (a supervisor's session, never a typed name);
-- null when the credit went back to the tier's.
UPDATE calls SET bumped_by = $2 WHERE id = $1

-- move_waiting --
-- A supervisor moves a waiting call to queue $2: it keeps its service key (its
-- place in time) and its arrival; the target's overflow and maximum-wait
-- clocks count from its arrival, as if it had been there all along. Nothing
-- moves while the call is being offered (the agent may be accepting it).
WITH w AS (
    UPDATE waiting_calls
       SET queue = $2,
           widen_at = enqueued_at + make_interval(secs => $3),
           -- A virtual call has no maximum wait: nobody holds.
           give_up_at = CASE WHEN (SELECT callback_number FROM calls WHERE id = $1) IS NULL
                             THEN enqueued_at + make_interval(secs => $4) END
     WHERE call_id = $1 AND offered_to IS NULL
    RETURNING call_id
)
UPDATE calls c SET queue = $2 FROM w WHERE c.id = w.call_id
RETURNING c.id

-- position --
SELECT 1
     + (SELECT count(*) FROM waiting_calls
         WHERE queue = $1 AND offered_to IS NULL AND (service_key, call_id) < ($2, $3))
     + (SELECT count(*) FROM waiting_calls
         WHERE offered_to IS NOT NULL AND queue = $1 AND (service_key, call_id) < ($2, $3))

-- waiting_in_queue --
SELECT w.call_id, w.service_key, w.enqueued_at, w.offered_to, w.offer_expires_at,
       c.external_id, c.tier, c.credit_seconds, c.credit_explicit, c.customer_id,
       c.ewt_at_enqueue, cu.customer_number, cu.name AS customer_name, cu.provisional,
       extract(epoch FROM now() - w.enqueued_at) AS waited,
       c.callback_number IS NOT NULL AS callback, c.resumed_from IS NOT NULL AS resumed
  FROM waiting_calls w
  JOIN calls c ON c.id = w.call_id
  LEFT JOIN customers cu ON cu.id = c.customer_id
 WHERE w.queue = $1
 ORDER BY w.service_key, w.call_id
 LIMIT $2

-- queue_summaries --
SELECT q.name,
       (SELECT count(*) FROM waiting_calls w WHERE w.queue = q.name) AS waiting,
       (SELECT count(*) FROM waiting_calls w
         WHERE w.queue = q.name AND w.offered_to IS NOT NULL) AS offered,
       (SELECT extract(epoch FROM now() - min(w.enqueued_at)) FROM waiting_calls w
         WHERE w.queue = q.name) AS longest_wait,
       (SELECT count(*) FROM agents a
         WHERE q.name = ANY (a.queues) AND a.state <> 'offline') AS staffed,
       (SELECT count(*) FROM agents a
         WHERE q.name = ANY (a.queues) AND a.state = 'available') AS available,
       (SELECT count(*) FROM calls c
         WHERE c.queue = q.name AND c.connected_at > now() - make_interval(secs => $1)) AS answered,
       (SELECT count(*) FROM calls c
         WHERE c.queue = q.name AND c.connected_at > now() - make_interval(secs => $1)
           AND c.connected_at - c.enqueued_at
               <= make_interval(secs => q.service_level_seconds)) AS answered_in_sl,
       (SELECT count(*) FROM calls c
         WHERE c.queue = q.name AND c.state = 'abandoned'
           AND c.end_reason IS DISTINCT FROM 'rang_again'
           AND c.ended_at > now() - make_interval(secs => $1)) AS abandoned,
       -- Virtual calls: in the queue (the small waiting table), and set aside
       -- after a ring nobody answered (the partial index of due retries).
       (SELECT count(*) FROM waiting_calls w JOIN calls c ON c.id = w.call_id
         WHERE w.queue = q.name AND c.callback_number IS NOT NULL) AS callbacks_waiting,
       (SELECT count(*) FROM calls c
         WHERE c.callback_retry_at IS NOT NULL AND c.queue = q.name) AS callbacks_set_aside
  FROM queues q
 ORDER BY q.name

-- offer_next --
-- The router's one step: the claim of an offer, queue_offer_next (migration
-- 0027, where what it locks, picks and answers is explained), which the
-- enqueue runs too, so both claim with the same statement. One row: the offer
-- (offer_id, call_id, agent_id, expires_at, queue, ``more``), or none.
SELECT offer_id, call_id, agent_id, expires_at, queue, more FROM queue_offer_next(true)

-- accept_offer --
-- The agent $2 takes its open offer $1: the SQL function accept_offer
-- (migration 0025), which says what it does and in which order it locks. Its
-- row comes back as one column, ``accepted``, as in the statement of the agent
-- desk that reads the caller's panel in the same round trip. $3, $4: the
-- channel and prefix of the connect event, sent only when the accept claimed
-- no bridge; $5-$7: this instance's bridger (its peers, its name, its lease).
SELECT acc AS accepted FROM accept_offer($1, $2, $3, $4, $5, $6, $7) AS acc

-- offer --
SELECT o.id, o.call_id, o.agent_id, o.offered_at, o.expires_at, o.result,
       w.offer_id IS NOT DISTINCT FROM o.id AS open
  FROM call_offers o
  LEFT JOIN waiting_calls w ON w.call_id = o.call_id
 WHERE o.id = $1

-- return_offers --
-- Open offers $1 end with result $2 and their calls go back with their keys
-- untouched; an agent still in 'offered' goes to $3. Offers already closed are
-- left alone, so a late timer or a second sweep changes nothing.
WITH cur AS (
    SELECT w.call_id, w.offer_id, w.offered_to, w.queue
      FROM waiting_calls w
     WHERE w.offer_id = ANY ($1::bigint[])
       FOR UPDATE
), back AS (
    UPDATE waiting_calls w
       SET offered_to = NULL, offer_id = NULL, offer_expires_at = NULL
      FROM cur WHERE w.call_id = cur.call_id
), closed AS (
    UPDATE call_offers o SET result = $2, ended_at = now()
      FROM cur WHERE o.id = cur.offer_id
), agent AS (
    UPDATE agents a
       SET state = $3, state_since = now(),
           idle_since = CASE WHEN $3 = 'available' THEN a.idle_since END
      FROM cur
     WHERE a.id = cur.offered_to AND a.state = 'offered'
)
SELECT call_id, offered_to AS agent_id, queue FROM cur

-- expired_offers --
SELECT offer_id FROM waiting_calls
 WHERE offer_id IS NOT NULL AND offer_expires_at <= now()

-- agents_gone --
-- Agents whose sockets stopped refreshing them more than the grace period ago.
-- An agent on a call stays on it: the call is still up on the phone.
UPDATE agents
   SET state = 'offline', state_since = now(), idle_since = NULL
 WHERE state NOT IN ('offline', 'on_call')
   AND NOT EXISTS (SELECT 1 FROM agent_presence p
                    WHERE p.agent_id = agents.id
                      AND p.last_seen_at >= now() - make_interval(secs => $1))
RETURNING id

-- lock_offers_of_gone_agents --
-- The sweep's ``agents_gone`` takes offline, among others, agents that hold an
-- offer: the waiting rows of those offers are locked first, in the order of
-- ``lock_offers_of_agent`` (an agent that stops being seen between the two
-- statements is the only one still locked agent first).
SELECT w.offer_id
  FROM waiting_calls w
  JOIN agents a ON a.id = w.offered_to
 WHERE w.offer_id IS NOT NULL AND a.state NOT IN ('offline', 'on_call')
   AND NOT EXISTS (SELECT 1 FROM agent_presence p
                    WHERE p.agent_id = a.id
                      AND p.last_seen_at >= now() - make_interval(secs => $1))
 ORDER BY w.call_id
   FOR UPDATE OF w

-- offers_of_agents --
SELECT offer_id FROM waiting_calls WHERE offered_to = ANY ($1::bigint[]) AND offer_id IS NOT NULL

-- lock_offers_of_agent --
-- Going offline locks the waiting row of the call agent $1 is offered first,
-- and the agent after (``set_offline``, ``force_offline``): the order of every
-- statement that takes both (waiting_calls, calls, agents, as the accept and
-- the end do). Locking the agent first deadlocked with the offered caller's
-- hang-up, which holds the waiting row and then frees the agent.
SELECT offer_id FROM waiting_calls WHERE offered_to = $1 AND offer_id IS NOT NULL FOR UPDATE

-- wrap_ups_done --
UPDATE agents
   SET state = 'available', state_since = now(), idle_since = now(), call_id = NULL,
       wrap_up_until = NULL
 WHERE state = 'wrap_up' AND wrap_up_until <= now()
RETURNING id

-- given_up --
-- Calls past their queue's maximum wait and not offered right now.
SELECT w.call_id, w.queue, q.overflow_queue
  FROM waiting_calls w
  JOIN queues q ON q.name = w.queue
 WHERE w.give_up_at <= now() AND w.offered_to IS NULL
 LIMIT 500
   FOR UPDATE OF w SKIP LOCKED

-- move_to_queue --
-- Overflow at maximum wait: the call keeps its service key in the new queue.
WITH w AS (
    UPDATE waiting_calls
       SET queue = $2,
           widen_at = now() + make_interval(secs => $3),
           give_up_at = now() + make_interval(secs => $4)
     WHERE call_id = $1 AND offered_to IS NULL
    RETURNING call_id
)
UPDATE calls c SET queue = $2 FROM w WHERE c.id = w.call_id

-- finish_call --
-- The end of a call in one round trip: the lock, the checks, the close, and the
-- call as it is after, by the server-side function of migration 0021 (which
-- says what each argument and each ``result`` is). $1 our call id, or null
-- with $2 the peer's call as our external id; $3 the outcome, or null for the
-- peer's hang-up (by the call's state); $4 the reason; $5 the state it must
-- still be in; $6 the agent ending it; $7 leave a callback call whose caller is
-- not on the line; $8 the channel; $9, $10, $11 the prefixes of the events;
-- the release at the peer: $12 the peers of this instance's releaser (null: no
-- release taken here), $13 its name, $14 its lease, $15 why none is needed when
-- the reason alone says so, $16 the prefix of the event for other releasers.
SELECT * FROM finish_call($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)

-- close_call --
-- The end of call $1 (outcome $2, reason $3) of a caller who hung up before it
-- was handed in (``CallDesk.record_gone``), by the close every end makes
-- (migration 0021): its contact in the history; the agent $4 that held it (if
-- any) to wrap-up for $5 seconds; the events $7 on channel $6.
SELECT close_call($1, $2, $3, $4, $5, $6, $7) AS interaction_id

-- waiting_calls_of_customer --
SELECT c.id, c.queue, c.credit_explicit
  FROM waiting_calls w JOIN calls c ON c.id = w.call_id
 WHERE c.customer_id = $1

-- create_agent --
INSERT INTO agents (name, token_sha256, queues, overflow_queues, endpoint, token_expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
RETURNING id

-- reset_agent_token --
-- The old token stops working with this commit; the new one lives its full term.
UPDATE agents SET token_sha256 = $2, token_expires_at = now() + make_interval(secs => $3)
 WHERE id = $1 AND removed_at IS NULL
RETURNING id

-- remove_agent --
-- Removed, not deleted: its calls keep its name. The token becomes one nobody holds.
UPDATE agents SET removed_at = now(), token_sha256 = $2, token_expires_at = now()
 WHERE id = $1 AND removed_at IS NULL
RETURNING id

-- agent_id_by_name --
SELECT id FROM agents WHERE removed_at IS NULL AND (name = $1 OR id::text = $1)

-- notify_all --
-- Events published from a transaction by code that holds no event bus (the CLI).
SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p

-- set_agent_queues --
UPDATE agents SET queues = $2, overflow_queues = $3 WHERE id = $1 AND removed_at IS NULL
RETURNING id

-- set_agent_endpoint --
UPDATE agents SET endpoint = $2 WHERE id = $1 RETURNING id

-- agent --
SELECT a.id, a.name, a.queues, a.overflow_queues, a.state, a.state_since, a.idle_since,
       a.call_id, a.wrap_up_until, p.last_seen_at, a.endpoint, a.token_expires_at,
       a.removed_at
  FROM agents a LEFT JOIN agent_presence p ON p.agent_id = a.id
 WHERE a.id = $1

-- agents --
SELECT a.id, a.name, a.queues, a.overflow_queues, a.state, a.state_since, a.idle_since,
       a.call_id, a.wrap_up_until, p.last_seen_at, a.endpoint
  FROM agents a LEFT JOIN agent_presence p ON p.agent_id = a.id
 WHERE a.removed_at IS NULL
 ORDER BY a.id

-- agent_by_token --
-- With the token's expiry: an agent's socket is closed when it passes. With $2
-- (the agent's socket as it opens) the agent is seen now, as ``seen`` does it,
-- in the same round trip (issue 21: they were two); a token that opens nothing
-- (unknown, expired, revoked, removed) marks nobody.
WITH found AS (
    SELECT id, name, token_expires_at FROM agents
     WHERE token_sha256 = $1 AND removed_at IS NULL
       AND (token_expires_at IS NULL OR token_expires_at > now())
), seen AS (
    INSERT INTO agent_presence (agent_id, last_seen_at)
    SELECT id, now() FROM found WHERE $2::boolean
    ON CONFLICT (agent_id) DO UPDATE SET last_seen_at = excluded.last_seen_at
), back AS (
    -- A panel opening again takes back a sign-out that waited for a call's end.
    UPDATE agents a SET offline_after_call = false
      FROM found WHERE $2::boolean AND a.id = found.id AND a.offline_after_call
)
SELECT id, name, token_expires_at FROM found

-- set_available --
-- The agent says it is free: from any state but a call in progress. Its events
-- ($3: free, or none) go out on channel $2 at commit, in the same round trip
-- (the publish was a statement of its own, issue 21); the agents' trigger
-- sends its new state. With $4 (this instance's router takes the offer over:
-- CallDesk's ``Offers``) the statement then runs the router's claim, as the
-- enqueue and the wrap-up do (queue_offer_next, migration 0027: a lateral call
-- on the freed row, so it sees the agent free), and returns its offer as
-- ``offer_*`` (null: none). A removed agent stays offline: its panel's
-- ``available`` may still be in flight, or wait for the removal's lock. The
-- agent's own word takes back a sign-out made on a call (``offline_after_call``).
WITH freed AS (
    UPDATE agents
       SET state = 'available', state_since = now(),
           idle_since = CASE WHEN state = 'available' THEN idle_since ELSE now() END,
           call_id = NULL, wrap_up_until = NULL, offline_after_call = false
     WHERE id = $1 AND state IN ('offline', 'available', 'not_responding', 'wrap_up')
       AND removed_at IS NULL
    RETURNING id
), notified AS (
    SELECT pg_notify($2, p) FROM freed, unnest($3::text[]) AS p
)
SELECT f.id, (SELECT count(*) FROM notified) AS notified,
       o.offer_id, o.call_id AS offer_call_id, o.agent_id AS offer_agent_id,
       o.expires_at AS offer_expires_at, o.queue AS offer_queue, o.more AS offer_more
  FROM freed f
  LEFT JOIN LATERAL queue_offer_next($4::boolean AND f.id IS NOT NULL) AS o ON true

-- extend_wrap_up --
-- Agent $1 is still writing the wrap-up of call $2: it stays in wrap-up until
-- $3 seconds from now, but never past the queue's maximum counted from the
-- call's end (nor shorter than it already was). Nothing when the agent is not
-- in that wrap-up. A later end is notified by the agents' trigger (migration 0024).
WITH target AS (
    SELECT a.id, a.wrap_up_until,
           c.ended_at + make_interval(secs => greatest(q.wrap_up_seconds,
                                                       q.wrap_up_max_seconds)) AS cap
      FROM agents a
      JOIN calls c ON c.id = a.call_id
      JOIN queues q ON q.name = c.queue
     WHERE a.id = $1 AND a.call_id = $2 AND a.state = 'wrap_up'
       FOR UPDATE OF a
), changed AS (
    UPDATE agents a
       SET wrap_up_until = greatest(t.wrap_up_until, least(now() + make_interval(secs => $3), t.cap))
      FROM target t
     WHERE a.id = t.id
    RETURNING a.wrap_up_until, t.wrap_up_until AS was, t.cap
)
SELECT wrap_up_until, was, cap FROM changed

-- set_offline --
-- The agent goes offline; on a call it stays on it (the caller is on the line)
-- and is marked, so what would make it available after the call leaves it
-- offline (``offline_after_call``, migration 0031). Returns the new state. One
-- statement: as two (offline, then the mark on a call), an end of the call
-- committing between them left the agent in its wrap-up unmarked, and its clock
-- made it available; a blocked update re-reads the row, so this one takes
-- whichever branch the committed end left. A wrap-up is cut short, as by
-- ``force_offline``: the offline agent keeps neither the call nor its end.
UPDATE agents
   SET state = CASE WHEN state = 'on_call' THEN state ELSE 'offline' END,
       state_since = CASE WHEN state = 'on_call' THEN state_since ELSE now() END,
       idle_since = CASE WHEN state = 'on_call' THEN idle_since END,
       call_id = CASE WHEN state = 'on_call' THEN call_id END,
       wrap_up_until = CASE WHEN state = 'on_call' THEN wrap_up_until END,
       offline_after_call = state = 'on_call'
 WHERE id = $1 AND state IN ('available', 'not_responding', 'wrap_up', 'offered', 'on_call')
RETURNING state

-- force_offline --
-- A supervisor takes an agent out of routing: from any state but a call in
-- progress (the caller is on the line); a wrap-up is cut short.
UPDATE agents
   SET state = 'offline', state_since = now(), idle_since = NULL, call_id = NULL,
       wrap_up_until = NULL
 WHERE id = $1 AND removed_at IS NULL AND state <> 'on_call'
RETURNING id

-- seen --
INSERT INTO agent_presence (agent_id, last_seen_at)
SELECT id, now() FROM unnest($1::bigint[]) AS id
ON CONFLICT (agent_id) DO UPDATE SET last_seen_at = excluded.last_seen_at

-- agent_snapshot --
-- What an agent's panel shows, in one round trip, as jsonb: the agent, its pending
-- offer, and the call it holds (on the call or in its wrap-up) with the columns of
-- ``call`` prefixed ``held_``. A held call that waits again is left to ``call`` (its
-- panel shows a position, which this does not count). The function (migration 0024)
-- is also what every change of the agent's row sends with its notification.
SELECT agent_snapshot($1)

-- waiting_in_queues --
-- How many callers wait in each of queues $1 (being offered counts: the caller
-- still waits) and since when the longest has waited: what an agent's panel
-- shows before it goes available.
SELECT q.name, count(w.call_id)::int AS waiting, min(w.enqueued_at) AS oldest_enqueued_at
  FROM unnest($1::text[]) AS q(name)
  LEFT JOIN waiting_calls w ON w.queue = q.name
 GROUP BY q.name
 ORDER BY q.name

-- waiting_counts --
SELECT w.queue, coalesce(c.tier, 'unknown') AS tier, count(*) AS n
  FROM waiting_calls w JOIN calls c ON c.id = w.call_id
 GROUP BY 1, 2

-- record_gone_call --
-- A call whose hang-up arrived before its hand-in: recorded with its caller,
-- ended abandoned at once with no wait, never in the waiting table. It never
-- waits, so its key is its arrival: no credit, no queue offset.
INSERT INTO calls (external_id, queue, ani, customer_id, identified_by, tier, credit_seconds,
                   service_key, state, ended_at, end_reason, peer, peer_call_id)
VALUES ($1, $2, $3, $4, $5, $6, 0, queue_service_key(now(), 0, 0), 'abandoned', now(), $7,
        $8, $9)
ON CONFLICT (external_id) DO NOTHING
RETURNING id

-- requeue_connected --
-- The peer could not connect the caller to the agent who accepted: the call
-- goes back to waiting with its original key (and arrival), and the agent,
-- whose phone could not be reached, gets no offers until it says available.
-- A callback the caller had picked up (Twilio dials the agent only then) is a
-- virtual call again: not answered, and no maximum wait (nobody holds).
WITH c AS (
    UPDATE calls SET state = 'waiting', agent_id = NULL, connected_at = NULL,
                     callback_answered_at = NULL
     WHERE id = $1 AND state = 'connected' AND agent_id = $2
    RETURNING id, queue, service_key, enqueued_at, callback_number IS NOT NULL AS callback
), w AS (
    INSERT INTO waiting_calls (call_id, queue, service_key, enqueued_at, widen_at, give_up_at)
    SELECT id, queue, service_key, enqueued_at,
           enqueued_at + make_interval(secs => $3),
           CASE WHEN NOT callback THEN enqueued_at + make_interval(secs => $4) END
      FROM c
), a AS (
    UPDATE agents SET state = 'not_responding', state_since = now(), idle_since = NULL,
                      call_id = NULL
     WHERE id = $2 AND call_id = $1 AND state = 'on_call'
)
SELECT queue FROM c

-- call_queue --
SELECT queue FROM calls WHERE id = $1

-- request_callback --
-- The caller of waiting call $1 takes a callback to $2: the call stays in its
-- place (same waiting row, same key) without the caller on the line, so it
-- no longer gives up at the queue's maximum wait (that protects a caller who
-- holds). A second opt-in changes nothing. Answers the number stored.
WITH w AS MATERIALIZED (
    SELECT call_id FROM waiting_calls WHERE call_id = $1 FOR UPDATE
), c AS (
    UPDATE calls SET callback_number = $2, callback_requested_at = now()
     WHERE id = $1 AND state = 'waiting' AND callback_number IS NULL
       AND (SELECT count(*) FROM w) >= 0
    RETURNING id
), kept AS (
    UPDATE waiting_calls SET give_up_at = NULL FROM c WHERE waiting_calls.call_id = c.id
)
SELECT (SELECT id FROM c) IS NOT NULL AS requested, callback_number, state, queue
  FROM calls WHERE id = $1

-- lock_waiting_callback --
-- The customer's ($1) calls in queue $2 that wait for their callback, locked
-- (waiting row first, then the call) so that none is offered, accepted or rung
-- while a new call of theirs takes its place.
WITH v AS MATERIALIZED (
    SELECT id FROM calls
     WHERE customer_id = $1 AND queue = $2 AND state = 'waiting' AND callback_number IS NOT NULL
), w AS MATERIALIZED (
    SELECT call_id FROM waiting_calls WHERE call_id IN (SELECT id FROM v) FOR UPDATE
)
SELECT c.id FROM calls c
 WHERE c.id IN (SELECT id FROM v) AND c.state = 'waiting' AND (SELECT count(*) FROM w) >= 0
   FOR UPDATE

-- callback_of_call --
SELECT false AS requested, callback_number, state, queue FROM calls WHERE id = $1

-- callback_ringing --
-- The bridger rings the caller of callback call $1 for its claim $2 (agent $3,
-- number $4): one attempt more, recorded. Answers the attempt's number (1 = first).
-- A ring still open from an earlier claim (its instance died mid-ring, and the
-- claim was taken over) is closed: this one takes over.
WITH attempt AS (
    INSERT INTO callback_attempts (call_id, bridge_id, agent_id, number)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (bridge_id) DO NOTHING
    RETURNING id
), superseded AS (
    UPDATE callback_attempts
       SET result = 'cancelled', cause = 'a new ring took over', ended_at = now()
     WHERE call_id = $1 AND result IS NULL AND bridge_id <> $2
       AND EXISTS (SELECT 1 FROM attempt)
)
UPDATE calls SET callback_attempts = callback_attempts + (SELECT count(*) FROM attempt)::int,
                 callback_answered_at = NULL
 WHERE id = $1
RETURNING callback_attempts

-- callback_not_rung --
-- Ring $2 of call $1 never went out (the peer refused the command, or could not
-- be reached): it is closed as called off ($3 why) and not counted, since the
-- caller's phone never rang.
WITH closed AS (
    UPDATE callback_attempts SET result = 'cancelled', cause = $3, ended_at = now()
     WHERE bridge_id = $2 AND call_id = $1 AND result IS NULL
    RETURNING call_id
)
UPDATE calls SET callback_attempts = greatest(callback_attempts - 1, 0)
  FROM closed WHERE calls.id = closed.call_id

-- callback_leg --
UPDATE callback_attempts SET leg = $2 WHERE bridge_id = $1 AND leg IS NULL

-- callback_answered --
-- The caller picked up attempt $2 of call $1: from now on their hang-up ends
-- the conversation. Only while the call is still connected by that attempt.
-- The agent's panel shows it: the agent's row is counted changed (after the
-- call's, the usual order), so its trigger sends the snapshot at commit.
WITH attempt AS (
    UPDATE callback_attempts SET result = 'answered', ended_at = now()
     WHERE bridge_id = $2 AND call_id = $1 AND result IS NULL
    RETURNING call_id
), answered AS (
    UPDATE calls SET callback_answered_at = now()
      FROM attempt
     WHERE calls.id = attempt.call_id AND calls.state = 'connected'
    RETURNING calls.agent_id
), shown AS (
    UPDATE agents SET state_version = state_version + 1
     WHERE id = (SELECT agent_id FROM answered)
)
SELECT agent_id FROM answered

-- callback_attempt_closed --
-- Attempt $1 ended unanswered ($2: no_answer, failed, cancelled; $3 why).
UPDATE callback_attempts SET result = $2, cause = $3, ended_at = now()
 WHERE bridge_id = $1 AND result IS NULL
RETURNING call_id

-- callback_missed --
-- Nobody answered the ring of callback call $1 by agent $2: the agent is free
-- at once (it was not their doing), and the call waits again without a
-- waiting row until $3 seconds from now (null: never, the last attempt; the
-- caller then ends it). Only while the call is connected to that agent.
WITH c AS (
    UPDATE calls
       SET state = 'waiting', agent_id = NULL, connected_at = NULL,
           callback_answered_at = NULL,
           callback_retry_at = now() + make_interval(secs => $3::float8)
     WHERE id = $1 AND state = 'connected' AND agent_id = $2
       AND callback_number IS NOT NULL AND callback_answered_at IS NULL
    RETURNING id, queue, callback_attempts
), a AS (
    UPDATE agents SET state = 'available', state_since = now(), idle_since = now(),
                      call_id = NULL
     WHERE id = $2 AND call_id = $1 AND state = 'on_call'
       AND EXISTS (SELECT 1 FROM c)
)
SELECT queue, callback_attempts FROM c

-- callbacks_due --
-- Callback calls whose retry delay is over go back to their queue with their
-- key (the claim then finds them where they were); one statement, so a lost
-- commit leaves them due for the next sweep. The overflow clock counts from
-- the arrival, as for a requeue; no maximum wait (the caller is not holding).
WITH due AS (
    UPDATE calls c SET callback_retry_at = NULL
      FROM queues q
     WHERE c.callback_retry_at <= now() AND c.state = 'waiting' AND q.name = c.queue
    RETURNING c.id, c.queue, c.service_key, c.enqueued_at, q.overflow_after_seconds
), back AS (
    INSERT INTO waiting_calls (call_id, queue, service_key, enqueued_at, widen_at, give_up_at)
    SELECT id, queue, service_key, enqueued_at,
           enqueued_at + make_interval(secs => overflow_after_seconds), NULL
      FROM due
    ON CONFLICT (call_id) DO NOTHING
)
SELECT DISTINCT queue FROM due
