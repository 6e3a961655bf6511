-- The telephony room's statements: hang-ups that came before their call, the
-- exactly-once claim of connecting an accepted call at its peer, and the
-- exactly-once release of a caller whose call ended on our side.

-- peer_call --
-- What the gateway needs before it applies a peer's event, in one round trip:
-- our call for the peer's call id $1 (our external_id), if any, with its
-- state and agent, and whether a hang-up came for it before any incoming.
-- A callback call (the caller hung up to be rung back) says so, and whether the
-- caller picked up its current ring.
SELECT c.id, c.state, c.agent_id, t.external_id IS NOT NULL AS gone,
       c.callback_number IS NOT NULL AS callback,
       c.callback_answered_at IS NOT NULL AS answered
  FROM (VALUES (1)) AS one (x)
  LEFT JOIN calls c ON c.external_id = $1
  LEFT JOIN telephony_tombstones t ON t.external_id = $1

-- peer_call_identify --
-- An incoming's first look-up: ``peer_call``'s answer for $1 (``call_id``, null
-- if none, and ``gone``), and with it the identification candidates of phone $2
-- and typed customer number $3 (identify_candidates, migration 0023), one per
-- row, ``matched`` null when there are none. A new call's identification then
-- needs no round trip of its own (issue 21: they were two statements).
-- ``callback_waiting``: a phone candidate has a call waiting for its callback,
-- which this call may take over (see ``CallDesk.incoming``; migration 0028).
SELECT c.id AS call_id, t.external_id IS NOT NULL AS gone,
       k.matched, k.id, k.customer_number, k.name, k.tier, k.provisional,
       k.matched = 'phone' AND callback_waiting(k.id) AS callback_waiting
  FROM (VALUES (1)) AS one (x)
  LEFT JOIN calls c ON c.external_id = $1
  LEFT JOIN telephony_tombstones t ON t.external_id = $1
  LEFT JOIN LATERAL identify_candidates($2, $3) AS k ON true

-- add_tombstone --
-- Under the peer call's lock (telephony_lock, migration 0020), held until
-- commit: an enqueue of the same call storing it meanwhile either commits
-- before this writes (the hang-up's second look-up finds the call) or reads
-- the tombstone after this commits (``enqueue``'s hung_up).
WITH locked AS (SELECT telephony_lock($1))
INSERT INTO telephony_tombstones (external_id, cause)
SELECT $1, $2 FROM locked
ON CONFLICT (external_id) DO NOTHING

-- sweep_tombstones --
DELETE FROM telephony_tombstones WHERE hung_up_at < now() - make_interval(secs => $1)

-- claim_bridge --
-- The claim of a connect that the accept left to the bridgers (its call is of a
-- peer the accepting instance does not command; ``accept_offer`` claims the
-- others itself, with the same answer), or that the catch-up found without one.
-- One instance wins: the partial unique index allows one live claim per call.
-- Only a call that is connected now, to an agent, of a peer this instance can
-- command ($2), is claimed.
-- The answer carries all the bridger needs, read in the claim's own snapshot
-- (it was three more round trips: the agent, the call): whom to command (the
-- call's peer and the peer's call id), whom to connect (the agent's name and
-- endpoint, null when the agent is gone), and the call itself with the columns
-- of ``call`` (a connected call has no position, so ``call_of`` alone builds it).
WITH target AS (
    SELECT c.id, c.agent_id, c.peer, c.peer_call_id
      FROM calls c
     WHERE c.id = $1 AND c.state = 'connected' AND c.agent_id IS NOT NULL
       AND c.peer = ANY ($2::text[])
), claimed AS (
    INSERT INTO call_bridges (call_id, agent_id, claimed_by, lease_until)
    SELECT id, agent_id, $3, now() + make_interval(secs => $4) FROM target
    ON CONFLICT (call_id) WHERE state <> 'failed' DO NOTHING
    RETURNING id, call_id, agent_id
)
SELECT claimed.id AS bridge_id, claimed.agent_id AS bridge_agent_id,
       target.peer, target.peer_call_id,
       a.name AS agent_name, a.endpoint AS agent_endpoint,
       c.id, c.external_id, c.queue, c.ani, c.customer_id, c.identified_by, c.tier,
       c.credit_seconds, c.credit_explicit, c.service_key, c.state, c.agent_id,
       c.ewt_at_enqueue, c.enqueued_at, c.connected_at, c.ended_at, c.end_reason,
       c.bumped_by, w.offered_to, w.offer_id, w.offer_expires_at,
       cu.customer_number, cu.name AS customer_name, cu.provisional,
       c.callback_number, c.callback_requested_at, c.callback_attempts, c.callback_retry_at,
       c.callback_answered_at, c.resumed_from, c.resumed_arrival, c.waited_before_seconds
  FROM claimed
  JOIN target ON target.id = claimed.call_id
  JOIN calls c ON c.id = claimed.call_id
  LEFT JOIN waiting_calls w ON w.call_id = c.id
  LEFT JOIN customers cu ON cu.id = c.customer_id
  LEFT JOIN agents a ON a.id = claimed.agent_id

-- bridge_attempt_failed --
UPDATE call_bridges
   SET attempts = attempts + 1, last_error = $2,
       lease_until = now() + make_interval(secs => $3)
 WHERE id = $1

-- bridge_connected --
UPDATE call_bridges SET state = 'connected', connected_at = now(), attempts = attempts + 1
 WHERE id = $1 AND state = 'claimed'

-- bridge_outcome_unknown --
-- The command got no answer: it may have been carried out, so the claim stays
-- live (no second connect) and counts as sent from now; last_error says why.
UPDATE call_bridges SET state = 'connected', connected_at = now(), attempts = attempts + 1,
                        last_error = 'outcome unknown: ' || $2
 WHERE id = $1 AND state = 'claimed'

-- bridge_sent_before --
-- The call's live claim sent its command more than $2 seconds ago.
SELECT id FROM call_bridges
 WHERE call_id = $1 AND state = 'connected'
   AND connected_at < now() - make_interval(secs => $2)

-- live_bridge --
SELECT id FROM call_bridges WHERE call_id = $1 AND state <> 'failed'

-- bridge_failed --
UPDATE call_bridges SET state = 'failed', failed_at = now(), last_error = $2
 WHERE id = $1 AND state = 'claimed'

-- failed_bridges_of_call --
-- Connects that failed; a callback's ring nobody answered is not one (the
-- queue's callback attempts count those).
SELECT count(*) FROM call_bridges b
 WHERE b.call_id = $1 AND b.state = 'failed'
   AND NOT EXISTS (SELECT 1 FROM callback_attempts a
                    WHERE a.bridge_id = b.id AND a.result IN ('no_answer', 'failed'))

-- expire_claims --
-- Claims whose instance stopped renewing them (it died mid-connect): given up,
-- so the call can be claimed again.
UPDATE call_bridges
   SET state = 'failed', failed_at = now(),
       last_error = coalesce(last_error || '; ', '') || 'claim lease expired'
 WHERE state = 'claimed' AND lease_until < now()
RETURNING id, call_id, claimed_by

-- unbridged_calls --
-- Connected calls of our peers with no live claim: their connect event was
-- lost (listener reconnect) or their claim expired.
SELECT c.id
  FROM calls c
 WHERE c.state = 'connected'
   AND c.peer = ANY ($1::text[])
   AND NOT EXISTS (SELECT 1 FROM call_bridges b WHERE b.call_id = c.id AND b.state <> 'failed')
 ORDER BY c.connected_at
 LIMIT 200

-- ring_outcome_unknown --
-- The call's live claim is a ring whose command got no answer (see
-- bridge_outcome_unknown): the caller may be on the line.
SELECT 1 FROM call_bridges
 WHERE call_id = $1 AND state = 'connected' AND last_error LIKE 'outcome unknown%'

-- latest_ring --
SELECT bridge_id FROM callback_attempts WHERE call_id = $1 ORDER BY id DESC LIMIT 1

-- callback_agent --
-- The agent a ring of a callback was for (its claim $1, of call $2).
SELECT agent_id FROM callback_attempts WHERE bridge_id = $1 AND call_id = $2

-- stale_rings --
-- Rings of callbacks started more than $1 seconds ago that nobody reported on
-- (a peer that reports later never did) while the call still sits with the
-- agent unanswered: the agent would wait for ever. Of peers $2 only.
-- A ring whose command got no answer is left alone: it may have reached the
-- caller, who may be talking to the agent now (the peer's hang-up, or the
-- agent's end, closes it).
SELECT a.call_id, a.bridge_id, c.peer, c.peer_call_id
  FROM callback_attempts a
  JOIN calls c ON c.id = a.call_id
  JOIN call_bridges b ON b.id = a.bridge_id
 WHERE a.result IS NULL AND a.started_at < now() - make_interval(secs => $1)
   AND coalesce(b.last_error, '') NOT LIKE 'outcome unknown%'
   AND a.id = (SELECT max(l.id) FROM callback_attempts l WHERE l.call_id = a.call_id)
   AND c.state = 'connected' AND c.agent_id = a.agent_id
   AND c.callback_answered_at IS NULL
   AND c.peer = ANY ($2::text[])
 ORDER BY a.started_at
 LIMIT 100

-- agent_endpoint --
SELECT id, name, endpoint FROM agents WHERE id = $1

-- release_bridge --
-- The agent's leg never answered: the live claim of the call is closed as
-- failed so the call, back in the queue, can be claimed again.
UPDATE call_bridges SET state = 'failed', failed_at = now(), last_error = $2
 WHERE call_id = $1 AND state <> 'failed'

-- claim_release --
-- One instance wins a call's release (the primary key), in one round trip with
-- what it decides on: an ended call ($1) of a peer this instance commands ($2),
-- with the columns of ``call`` (an ended call has no position, so ``call_of``
-- alone builds it). A callback call's caller is on a line only once they picked
-- up its ring (callback_answered_at), and that line is the ring's own (leg).
-- Every claim starts ``claimed``: the decision (``release_policy``, in Python)
-- is taken on this answer, and a call that needs nothing is then marked
-- ``release_not_needed`` (an instance that dies in between leaves a claim whose
-- lease runs out, and the next one decides again). A live claim is taken over
-- only once its lease ran out (the instance that held it died); a finished one
-- never.
WITH subject AS (
    SELECT c.id, c.external_id, c.queue, c.ani, c.customer_id, c.identified_by, c.tier,
           c.credit_seconds, c.credit_explicit, c.service_key, c.state, c.agent_id,
           c.ewt_at_enqueue, c.enqueued_at, c.connected_at, c.ended_at, c.end_reason,
           c.bumped_by, NULL::bigint AS offered_to,
           cu.customer_number, cu.name AS customer_name, cu.provisional,
           c.callback_number, c.callback_requested_at, c.callback_attempts,
           c.callback_retry_at, c.callback_answered_at, c.resumed_from, c.resumed_arrival,
           c.waited_before_seconds, c.peer, c.peer_call_id,
           (SELECT a.leg FROM callback_attempts a WHERE a.call_id = c.id
             ORDER BY a.id DESC LIMIT 1) AS leg
      FROM calls c
      LEFT JOIN customers cu ON cu.id = c.customer_id
     WHERE c.id = $1 AND c.ended_at IS NOT NULL
       AND c.peer = ANY ($2::text[]) AND c.peer_call_id IS NOT NULL
), claimed AS (
    INSERT INTO call_releases AS r (call_id, state, claimed_by, lease_until)
    SELECT id, 'claimed', $3, now() + make_interval(secs => $4) FROM subject
    ON CONFLICT (call_id) DO UPDATE
       SET claimed_by = excluded.claimed_by, claimed_at = now(),
           lease_until = excluded.lease_until
     WHERE r.state = 'claimed' AND r.lease_until < now()
    RETURNING call_id, attempts
)
SELECT subject.*, claimed.attempts
  FROM claimed JOIN subject ON subject.id = claimed.call_id

-- release_not_needed --
-- The claim's call needs no hang-up at its peer; $3 says why.
UPDATE call_releases
   SET state = 'not_needed', note = $3, done_at = now()
 WHERE call_id = $1 AND claimed_by = $2 AND state = 'claimed'

-- release_attempt_failed --
-- $5: why the hang-up is needed (the claim's note).
UPDATE call_releases
   SET attempts = attempts + 1, last_error = $3, note = $5,
       lease_until = now() + make_interval(secs => $4)
 WHERE call_id = $1 AND claimed_by = $2 AND state = 'claimed'

-- release_done --
-- The releases of calls $1 that claimer $2 carried out, a window's at once
-- (release_marks.py), each with its own $3 to $6: released (the peer took the
-- hang-up) or gone (it had no such call any more; $4 is what it said), why
-- the hang-up was needed, and how many seconds ago it was done (the time is
-- the database's clock, as every other time of the call).
UPDATE call_releases r
   SET state = d.state, attempts = r.attempts + 1,
       done_at = now() - make_interval(secs => d.age),
       last_error = coalesce(d.peer_said, r.last_error), note = d.why
  FROM unnest($1::bigint[], $3::text[], $4::text[], $5::text[], $6::float8[])
       AS d (call_id, state, peer_said, why, age)
 WHERE r.call_id = d.call_id AND r.claimed_by = $2 AND r.state = 'claimed'

-- release_failed --
UPDATE call_releases SET state = 'failed', done_at = now(), note = $3
 WHERE call_id = $1 AND claimed_by = $2 AND state = 'claimed'

-- expired_releases --
-- Claims whose instance stopped renewing them: the catch-up takes them over.
SELECT call_id, claimed_by, attempts FROM call_releases
 WHERE state = 'claimed' AND lease_until < now()
 ORDER BY lease_until
 LIMIT 500

-- unreleased_calls --
-- Calls of peers $1 that ended in the last $2 seconds, and after $3 when
-- given (the previous pass's mark), with no release record: their ended event
-- was lost (a listener reconnect), or this instance was not running when
-- they ended. The mark keeps each pass to the last seconds of traffic
-- instead of the whole window (180,000 calls at 200/s).
SELECT c.id, c.ended_at
  FROM calls c
 WHERE c.ended_at > greatest(now() - make_interval(secs => $2), coalesce($3::timestamptz, '-infinity'))
   AND c.peer = ANY ($1::text[])
   AND NOT EXISTS (SELECT 1 FROM call_releases r WHERE r.call_id = c.id)
 ORDER BY c.ended_at
 LIMIT $4

-- clock --
SELECT now()

-- open_calls_of_peer --
-- What an adapter compares with its peer after a reconnect (ARI): the calls of
-- peer $1 that are not over, by the peer's call id. Waiting (the small waiting
-- table) or connected (the partial index on connected calls).
-- A callback call is left out: its caller hung up on purpose, and the leg
-- that rings them back is not the call's own.
SELECT c.peer_call_id
  FROM waiting_calls w JOIN calls c ON c.id = w.call_id
 WHERE c.peer = $1 AND c.callback_number IS NULL
UNION ALL
SELECT c.peer_call_id
  FROM calls c
 WHERE c.state = 'connected' AND c.peer = $1 AND c.callback_number IS NULL

-- ended_calls_of_peer --
-- Which of these calls ($1: our external ids, found by their unique index)
-- have ended on our side, by the peer's call id.
SELECT peer_call_id, state
  FROM calls
 WHERE external_id = ANY ($1::text[])
   AND state IN ('completed', 'abandoned', 'transferred')
