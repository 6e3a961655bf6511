-- The end of a call in one round trip (issue 21): the lock, the checks and the
-- close of ``CallDesk._finish`` in one server-side function.
--
-- Why: an end took a transaction of its own, BEGIN, lock_call, close_call and
-- COMMIT, four round trips; the peer's hang-up read the call by its peer call
-- id first (peer_call), and every end read the call back after (call): six on
-- a caller's hang-up, five on an agent's end. The function does what the
-- Python did between those statements, under the same locks in the same order
-- (the waiting row before the call, as every statement that takes both), and
-- answers with the call as the close left it, so nothing is read back.
--
-- The release at the peer (``telephony_adapters/releaser.py``) is taken in the
-- same statement where it can be: after every end, each instance's releaser
-- claimed the call's release (``claim_release``) and then marked it done or
-- not needed, two more round trips, and one wasted claim per other instance.
-- Now the end records it itself, for a call of a peer the ending instance's
-- releaser commands: as not needed when the end's reason alone says so (the
-- peer reported the hang-up: ``release_policy.by_reason``, given as
-- ``release_settled``), else claimed by that releaser with its lease, which
-- then decides and hangs up (a claim whose instance dies is taken over when its
-- lease runs out, as before). Only an end that recorded nothing sends
-- ``release:<call id>`` for the releasers of the other instances (and the
-- catch-up still finds an ended call with no release record).
--
-- close_call is the close itself, the statement ``close_call`` was: its contact
-- in the customer's history (as record_interaction), the call closed with it,
-- the agent that held it (if any) to wrap-up for wrap_up_seconds or straight
-- back to available when the queue has none, and the events on the channel
-- (delivered at commit, after all of it); it answers the contact's id (null
-- for a caller nobody knows). finish_call calls it for a call it found ready to
-- end, and the statement ``close_call`` for a call recorded gone before its
-- incoming (``CallDesk.record_gone``): one body for both.
CREATE FUNCTION close_call(
    call_id bigint, outcome text, reason text, agent_id bigint, wrap_up_seconds float8,
    channel text, events text[]
) RETURNS bigint
    LANGUAGE sql VOLATILE
AS $$
    WITH interaction AS (
        INSERT INTO interactions (customer_id, channel, started_at, ended_at, agent, outcome,
                                  identified_by, details)
        SELECT c.customer_id, 'phone', c.enqueued_at, now(), a.name, $2, c.identified_by,
               jsonb_build_object(
                   'call_id', c.id, 'queue', c.queue, 'tier', c.tier,
                   'waited_seconds', round(extract(epoch FROM coalesce(c.connected_at, now())
                                                           - c.enqueued_at)::numeric, 3),
                   'talk_seconds', CASE WHEN c.connected_at IS NOT NULL
                                        THEN round(extract(epoch FROM now() - c.connected_at)::numeric, 3)
                                   END,
                   'reason', $3)
          FROM calls c
          LEFT JOIN agents a ON a.id = c.agent_id
         WHERE c.id = $1 AND c.customer_id IS NOT NULL
        RETURNING id
    ), ended AS (
        UPDATE calls
           SET state = $2, ended_at = now(), end_reason = $3,
               interaction_id = (SELECT id FROM interaction), callback_retry_at = NULL
         WHERE id = $1
    ), agent AS (
        UPDATE agents
           SET state = CASE WHEN $5 > 0 THEN 'wrap_up' ELSE 'available' END,
               state_since = now(),
               wrap_up_until = CASE WHEN $5 > 0 THEN now() + make_interval(secs => $5) END,
               idle_since = CASE WHEN $5 > 0 THEN idle_since ELSE now() END,
               call_id = CASE WHEN $5 > 0 THEN call_id END
         WHERE id = $4 AND call_id = $1 AND state = 'on_call'
    ), notified AS (
        SELECT pg_notify($6, p) FROM unnest($7) AS p
    )
    SELECT (SELECT id FROM interaction) FROM (SELECT count(*) FROM notified) AS sent
$$;

-- finish_call ends call ``call_id`` (or, when that is null, the call of a peer
-- known as ``external``: the peer's hang-up) with ``outcome``, or by its state
-- when that is null (the peer's hang-up: a waiting call is abandoned, a
-- connected one completed, an ended one stays as it is). Its answer's
-- ``result`` says what happened, for the Python to raise what it raised:
--
--   closed      it ended now;
--   unknown     no call of that peer call id (the gateway's tombstone path);
--   not_found   no call with that id;
--   not_yours   it is not connected to ``agent``, the agent who ends it;
--   unexpected  it is not in state ``expect`` (the sweep must not end a call an
--               agent just answered): nothing changes;
--   callback    ``spare_callback`` and the caller hung up to be rung back (or
--               before picking up the ring): nothing changes, the gateway looks closer;
--   repeat      it ended with this outcome already (a retry), or as it is;
--   ended       it ended with another outcome: a conflict;
--   not_waiting / not_connected: only a waiting call is abandoned, only a
--               connected one completes: a conflict.
--
-- ``was`` is its state before, ``held_by`` the agent it was connected to (the
-- audit's entry names them); ``release`` what the end recorded of the release
-- (``claimed`` by ``release_by`` for ``release_lease`` seconds, ``not_needed``,
-- or null), with the peer, the peer's call id and a callback's ring leg that the
-- claim's releaser needs (as ``claim_release`` answers them); the rest are the
-- columns of the statement ``call`` as it is after (an ended call has no
-- position, so ``call_of`` alone builds it). The events are named by their
-- prefixes (``agent:``, ``free:``, ``ended:``, ``release:``), given by the
-- Python that reads them. ``release_peers`` null: this instance releases
-- nothing (or the end is part of a larger transaction, whose commit the
-- releaser could not wait for).
CREATE FUNCTION finish_call(
    call_id bigint, external text, outcome text, reason text, expect text, agent bigint,
    spare_callback boolean, channel text, agent_event text, free_event text, ended_event text,
    release_peers text[], release_by text, release_lease float8, release_settled text,
    release_event text
) RETURNS TABLE (
    result text, was text, held_by bigint,
    release text, peer text, peer_call_id text, leg text,
    id bigint, external_id text, queue text, ani text, customer_id bigint, identified_by text,
    tier text, credit_seconds double precision, credit_explicit boolean,
    service_key timestamptz, state text, agent_id bigint, ewt_at_enqueue double precision,
    enqueued_at timestamptz, connected_at timestamptz, ended_at timestamptz, end_reason text,
    bumped_by text, offered_to bigint, offer_id bigint, offer_expires_at timestamptz,
    customer_number text, customer_name text, provisional boolean,
    callback_number text, callback_requested_at timestamptz, callback_attempts integer,
    callback_retry_at timestamptz, callback_answered_at timestamptz, resumed_from bigint,
    resumed_arrival timestamptz, waited_before_seconds double precision
)
    LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    found_id bigint := finish_call.call_id;
    locked record;
    gone record;
    verdict text;
    ending text;
    wrap_up float8 := 0;
    events text[] := '{}';
    releasing text;
BEGIN
    IF found_id IS NULL THEN
        SELECT c.id INTO found_id FROM calls c WHERE c.external_id = finish_call.external;
        IF found_id IS NULL THEN
            result := 'unknown';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    -- The waiting row first, the call next (see lock_call).
    PERFORM 1 FROM waiting_calls w WHERE w.call_id = found_id FOR UPDATE;
    SELECT c.state, c.queue, c.agent_id, c.callback_number, c.callback_answered_at, c.peer
      INTO locked
      FROM calls c WHERE c.id = found_id FOR UPDATE;
    IF NOT FOUND THEN
        result := 'not_found';
        RETURN NEXT;
        RETURN;
    END IF;
    ending := coalesce(finish_call.outcome,
                       CASE locked.state WHEN 'waiting' THEN 'abandoned'
                                         WHEN 'connected' THEN 'completed' END);
    verdict := CASE
        WHEN finish_call.agent IS NOT NULL AND locked.agent_id IS DISTINCT FROM finish_call.agent
            THEN 'not_yours'
        WHEN locked.state <> finish_call.expect THEN 'unexpected'
        WHEN spare_callback AND locked.callback_number IS NOT NULL
             AND locked.callback_answered_at IS NULL THEN 'callback'
        WHEN locked.state IN ('completed', 'abandoned', 'transferred') THEN
            CASE WHEN ending IS NULL OR ending = locked.state THEN 'repeat' ELSE 'ended' END
        WHEN ending = 'abandoned' AND locked.state <> 'waiting' THEN 'not_waiting'
        WHEN ending = 'completed' AND locked.state <> 'connected' THEN 'not_connected'
        ELSE 'closed'
    END;
    IF verdict = 'not_yours' THEN
        result := verdict;
        RETURN NEXT;
        RETURN;
    END IF;
    IF verdict = 'closed' THEN
        IF locked.state = 'waiting' THEN
            DELETE FROM waiting_calls w WHERE w.call_id = found_id
            RETURNING w.offer_id, w.offered_to INTO gone;
            IF gone.offer_id IS NOT NULL THEN
                UPDATE call_offers o SET result = 'withdrawn', ended_at = now()
                 WHERE o.id = gone.offer_id AND o.result IS NULL;
                -- Not the agent's doing: it is free again, and keeps its idle time.
                UPDATE agents a SET state = 'available', state_since = now()
                 WHERE a.id = gone.offered_to AND a.state = 'offered';
                events := events || (agent_event || gone.offered_to)
                                 || (free_event || gone.offered_to);
            END IF;
        ELSIF locked.agent_id IS NOT NULL THEN
            SELECT q.wrap_up_seconds INTO wrap_up FROM queues q WHERE q.name = locked.queue;
            -- The agent's new state goes out from the agents' trigger (migration 0024).
            IF wrap_up = 0 THEN
                events := events || (free_event || locked.agent_id);
            END IF;
        END IF;
        -- Whoever shows an end (the panels, the dashboard) hears of it at commit; the
        -- releasers only when this end leaves the release to them.
        events := events || (ended_event || found_id);
        IF locked.peer = ANY (release_peers) THEN
            releasing := CASE WHEN release_settled IS NULL THEN 'claimed' ELSE 'not_needed' END;
        ELSIF locked.peer IS NOT NULL THEN
            events := events || (release_event || found_id);
        END IF;
        PERFORM close_call(
            found_id, ending, finish_call.reason,
            CASE WHEN locked.state = 'connected' THEN locked.agent_id END,
            wrap_up, channel, ARRAY(SELECT DISTINCT e FROM unnest(events) AS e ORDER BY e)
        );
        IF releasing IS NOT NULL THEN
            -- The call ended just now, under its lock, so no release is recorded yet
            -- (every claim is of an ended call); were one there, it is not ours.
            INSERT INTO call_releases AS r (call_id, state, note, claimed_by, lease_until, done_at)
            VALUES (found_id, releasing, release_settled, release_by,
                    now() + make_interval(secs => CASE WHEN releasing = 'claimed'
                                                       THEN release_lease ELSE 0 END),
                    CASE WHEN releasing = 'not_needed' THEN now() END)
            ON CONFLICT (call_id) DO NOTHING;
            IF NOT FOUND THEN
                releasing := NULL;
            END IF;
        END IF;
    END IF;
    RETURN QUERY
    SELECT verdict, locked.state,
           CASE WHEN locked.state = 'connected' THEN locked.agent_id END,
           releasing, c.peer, c.peer_call_id,
           CASE WHEN releasing = 'claimed' AND c.callback_number IS NOT NULL THEN
               (SELECT a.leg FROM callback_attempts a WHERE a.call_id = c.id
                 ORDER BY a.id DESC LIMIT 1)
           END,
           c.id, c.external_id, c.queue, c.ani, c.customer_id, c.identified_by, c.tier,
           c.credit_seconds, c.credit_explicit, c.service_key, c.state, c.agent_id,
           c.ewt_at_enqueue, c.enqueued_at, c.connected_at, c.ended_at, c.end_reason,
           c.bumped_by, w.offered_to, w.offer_id, w.offer_expires_at,
           cu.customer_number, cu.name, cu.provisional,
           c.callback_number, c.callback_requested_at, c.callback_attempts,
           c.callback_retry_at, c.callback_answered_at, c.resumed_from, c.resumed_arrival,
           c.waited_before_seconds
      FROM calls c
      LEFT JOIN waiting_calls w ON w.call_id = c.id
      LEFT JOIN customers cu ON cu.id = c.customer_id
     WHERE c.id = found_id;
END
$$;
