-- The telephony room's statements: hang-ups that came before their call, and
-- the exactly-once claim of connecting an accepted call at its peer.

-- tombstone --
SELECT cause, hung_up_at FROM telephony_tombstones WHERE external_id = $1

-- add_tombstone --
INSERT INTO telephony_tombstones (external_id, cause) VALUES ($1, $2)
ON CONFLICT (external_id) DO NOTHING

-- sweep_tombstones --
DELETE FROM telephony_tombstones WHERE hung_up_at < now() - make_interval(secs => $1)

-- claim_bridge --
-- One instance wins: the partial unique index allows one live claim per call.
-- Only a call that is connected now, to an agent, of a peer this instance can
-- command ($2), is claimed.
INSERT INTO call_bridges (call_id, agent_id, claimed_by, lease_until)
SELECT c.id, c.agent_id, $3, now() + make_interval(secs => $4)
  FROM calls c
 WHERE c.id = $1 AND c.state = 'connected' AND c.agent_id IS NOT NULL
   AND split_part(c.external_id, ':', 1) = ANY ($2::text[])
ON CONFLICT (call_id) WHERE state <> 'failed' DO NOTHING
RETURNING id, call_id, agent_id

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
SELECT count(*) FROM call_bridges WHERE call_id = $1 AND state = 'failed'

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
   AND split_part(c.external_id, ':', 1) = ANY ($1::text[])
   AND NOT EXISTS (SELECT 1 FROM call_bridges b WHERE b.call_id = c.id AND b.state <> 'failed')
 ORDER BY c.connected_at
 LIMIT 200

-- agent_endpoint --
SELECT id, name, endpoint FROM agents WHERE id = $1

-- release_bridge --
-- The agent's leg never answered: the live claim of the call is closed as
-- failed so the call, back in the queue, can be claimed again.
UPDATE call_bridges SET state = 'failed', failed_at = now(), last_error = $2
 WHERE call_id = $1 AND state <> 'failed'
