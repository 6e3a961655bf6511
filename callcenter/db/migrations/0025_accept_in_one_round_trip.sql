-- The accept, its bridge's claim and its panel's read in one round trip (issue 21).
--
-- Why: from an agent's accept to the caller's panel on its screen and the
-- connect command at the peer, five statements went to PostgreSQL: the accept
-- (accept_offer), the bridge's claim by whichever instance's bridger heard the
-- accept's connect event (claim_bridge), the panel's read (panel), the question
-- it shows (set_question) and the command's success (bridge_connected).
--
-- * accept_offer(...) is the accept: the statement ``accept_offer`` was, now
--   with the claim of the bridge for this instance's bridger when that bridger
--   commands the call's peer (as finish_call records the release for this
--   instance's releaser, migration 0021), answering with what claim_bridge
--   answers, so the bridger commands the peer without another read. Only an
--   accept that claimed nothing publishes connect:<call id> for the bridgers of
--   the other instances (their claim, and the catch-up's, are as before).
-- * assist_panel(...) is the panel's read: the statement ``panel`` was (with
--   the audit entry of the read), as a function so that a read and the accept
--   share one body.
-- * The agent desk's statement for an accept (agent_assist/desk/accept.sql)
--   calls both: the accept, then the panel of the call it connected, read for
--   the agent's socket that accepted and audited as that socket's read. The
--   accept comes back whole as one column of type accepted_offer (asyncpg
--   decodes a composite into a record: the router reads it as it reads its
--   own statement's answer), the panel's columns beside it, as ``panel`` has
--   them. The question a panel shows is still chosen in Python
--   (questions.pending_question) and stored by set_question, the stored choice
--   winning when two instances choose.
--
-- Both are plpgsql so that the query's plan is cached per session, as a
-- prepared statement's was (an SQL function's body is planned again on every
-- call before PostgreSQL 18).

-- The accept's answer: the call connected, its bridge's claim (bridge_id null
-- when none was taken here) and the call as ``call`` reads it (``call_of``).
CREATE TYPE accepted_offer AS (
    call_id bigint, queue text, tier text, waited double precision, notified bigint,
    bridge_id bigint, bridge_agent_id bigint, peer text, peer_call_id text,
    agent_name text, agent_endpoint text,
    id bigint, external_id text, ani text, customer_id bigint, identified_by text,
    credit_seconds double precision, credit_explicit boolean, service_key timestamptz,
    state text, agent_id bigint, ewt_at_enqueue double precision, enqueued_at timestamptz,
    connected_at timestamptz, ended_at timestamptz, end_reason text, bumped_by text,
    offered_to bigint, offer_id bigint, offer_expires_at timestamptz,
    customer_number text, customer_name text, provisional boolean,
    callback_number text, callback_requested_at timestamptz, callback_attempts integer,
    callback_retry_at timestamptz, callback_answered_at timestamptz, resumed_from bigint,
    resumed_arrival timestamptz, waited_before_seconds double precision
);

-- Only the agent the offer was made to, and only before it expires. The
-- agent's change is notified with its snapshot by the agents' trigger.
--
-- The bridge at the peer is claimed in the same statement where it can be: a
-- call of a peer in ``bridge_peers`` (the peers this instance's bridger
-- commands; null: none, or no bridger runs here) gets its live claim in
-- ``call_bridges`` for bridger ``bridge_by`` with a lease of ``bridge_lease``
-- seconds, as ``claim_bridge`` writes it, and the answer carries what
-- ``claim_bridge`` answers (``bridge_id`` null when nothing was claimed). The
-- call row it reports is the one this query wrote (``connected``'s RETURNING:
-- the query's snapshot still shows the call waiting); a connected call has no
-- waiting row, so no offer columns. The partial unique index keeps one live
-- claim per call: a live claim still there (the bridger that failed the call's
-- last connect marks it failed only after the call is back in the queue) wins,
-- and this claims nothing.
-- Only when nothing was claimed here does the connect of the call
-- (``connect_prefix`` || call id) go out on ``notify_channel`` when it
-- commits, so that another instance's bridger claims it (its catch-up finds it
-- anyway, should the event be lost). Locks: the waiting row first, then the
-- call (see lock_call in queue/queries.sql), the offer, the agent, and the
-- claim last; a claim of the call that another transaction is changing (a
-- connect that failed: the call back, then the claim released) is changed
-- after that transaction took the call, so the accept waits for the call
-- first, and never holds what that one waits for.
CREATE FUNCTION accept_offer(
    accepting_offer bigint, accepting_agent bigint, notify_channel text, connect_prefix text,
    bridge_peers text[], bridge_by text, bridge_lease double precision
) RETURNS SETOF accepted_offer
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN QUERY
    WITH taken AS (
        DELETE FROM waiting_calls
         WHERE call_id = (SELECT call_id FROM call_offers WHERE id = accepting_offer)
           AND offer_id = accepting_offer AND offered_to = accepting_agent AND offer_expires_at > now()
        RETURNING call_id, queue, enqueued_at
    ), closed AS (
        UPDATE call_offers SET result = 'accepted', ended_at = now()
         WHERE id = accepting_offer AND EXISTS (SELECT 1 FROM taken)
    ), connected AS (
        UPDATE calls c SET state = 'connected', agent_id = accepting_agent, connected_at = now()
          FROM taken WHERE c.id = taken.call_id
        RETURNING c.id, c.external_id, c.queue, c.ani, c.customer_id, c.identified_by, c.tier,
                  c.credit_seconds, c.credit_explicit, c.service_key, c.state, c.agent_id,
                  c.ewt_at_enqueue, c.enqueued_at, c.connected_at, c.ended_at, c.end_reason,
                  c.bumped_by, c.callback_number, c.callback_requested_at, c.callback_attempts,
                  c.callback_retry_at, c.callback_answered_at, c.resumed_from, c.resumed_arrival,
                  c.waited_before_seconds, c.peer, c.peer_call_id
    ), agent AS (
        UPDATE agents SET state = 'on_call', state_since = now(), idle_since = NULL,
                          call_id = (SELECT call_id FROM taken)
         WHERE id = accepting_agent AND EXISTS (SELECT 1 FROM taken)
    ), claimed AS (
        INSERT INTO call_bridges (call_id, agent_id, claimed_by, lease_until)
        SELECT connected.id, accepting_agent, bridge_by,
               now() + make_interval(secs => bridge_lease)
          FROM connected
         WHERE connected.peer = ANY (bridge_peers)
        ON CONFLICT (call_id) WHERE state <> 'failed' DO NOTHING
        RETURNING id, agent_id
    ), notified AS (
        SELECT pg_notify(notify_channel, connect_prefix || taken.call_id)
          FROM taken
         WHERE NOT EXISTS (SELECT 1 FROM claimed)
    )
    SELECT taken.call_id, taken.queue, c.tier,
           extract(epoch FROM now() - taken.enqueued_at)::float8 AS waited,
           (SELECT count(*) FROM notified) AS notified,
           claimed.id AS bridge_id, claimed.agent_id AS bridge_agent_id,
           c.peer, c.peer_call_id, a.name AS agent_name, a.endpoint AS agent_endpoint,
           c.id, c.external_id, c.ani, c.customer_id, c.identified_by,
           c.credit_seconds, c.credit_explicit, c.service_key, c.state, c.agent_id,
           c.ewt_at_enqueue, c.enqueued_at, c.connected_at, c.ended_at, c.end_reason,
           c.bumped_by, NULL::bigint AS offered_to, NULL::bigint AS offer_id,
           NULL::timestamptz AS offer_expires_at,
           cu.customer_number, cu.name AS customer_name, cu.provisional,
           c.callback_number, c.callback_requested_at, c.callback_attempts, c.callback_retry_at,
           c.callback_answered_at, c.resumed_from, c.resumed_arrival, c.waited_before_seconds
      FROM taken
      JOIN connected c ON c.id = taken.call_id
      LEFT JOIN claimed ON true
      LEFT JOIN agents a ON a.id = accepting_agent
      LEFT JOIN customers cu ON cu.id = c.customer_id;
END
$$;

-- The panel's row: ``panel``'s columns (knowledge/panel.py reads them).
CREATE TYPE assist_panel_row AS (
    call_id bigint, identified_by text, ani text, customer_id bigint, question_key text,
    interaction_id bigint, link_phone text, verified_by text, verified_at timestamptz,
    customer_number text, name text, lifetime_value numeric(14,2),
    annual_margin numeric(14,2), cost_to_serve numeric(14,2),
    tier text, tier_pinned boolean, provisional boolean, phones text[],
    latest_answers jsonb, history jsonb, last_contact jsonb, attempts_since jsonb,
    candidates jsonb
);

-- Everything the panel shows for call ``reading_call``, in one query: the call,
-- its customer with phones, the latest answer to each question (the needs
-- profile and what question selection works from), and the first ``page_rows``
-- contacts of the history, newest first, each with the answer given to that
-- contact's question; for a shared number (multiple), the customers sharing it,
-- to pick the caller from.
-- On top of the history, the last real contact (anything but a caller who hung
-- up waiting) and the abandoned attempts since it, counted with their longest
-- wait, so a wall of abandoned rows never hides the last conversation.
-- The call's own contact (recorded when it ended, during wrap-up) is left out:
-- the history is what came before.
-- With a ``reader`` (agent:<name>, from socket address ``reader_remote``), the
-- same query writes the read to the customer audit log (migration 0012): no
-- extra round trip on the path from accept to the agent's screen.
CREATE FUNCTION assist_panel(
    reading_call bigint, page_rows integer, reader text, reader_remote text
) RETURNS SETOF assist_panel_row
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN QUERY
    WITH audit AS (
        INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
        SELECT c.customer_id, reader, 'panel', reader_remote, 'panel',
               jsonb_build_object('call_id', c.id)
          FROM calls c
         WHERE c.id = reading_call AND c.customer_id IS NOT NULL AND reader IS NOT NULL
    ), audit_candidates AS (
        INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
        SELECT p.customer_id, reader, 'panel', reader_remote, 'panel_candidates',
               jsonb_build_object('call_id', c.id)
          FROM calls c
          JOIN customer_phones p ON p.phone_e164 = c.ani
         WHERE c.id = reading_call AND c.identified_by = 'multiple' AND reader IS NOT NULL
    )
    SELECT c.id AS call_id, c.identified_by, c.ani, c.customer_id, c.question_key,
           c.interaction_id, c.link_phone, c.verified_by, c.verified_at,
           cu.customer_number, cu.name, cu.lifetime_value, cu.annual_margin, cu.cost_to_serve,
           coalesce(cu.pinned_tier, cu.computed_tier) AS tier, cu.pinned_tier IS NOT NULL AS tier_pinned,
           cu.provisional,
           (SELECT coalesce(array_agg(p.phone_e164 ORDER BY p.linked_at, p.phone_e164), '{}')
              FROM customer_phones p
             WHERE p.customer_id = c.customer_id) AS phones,
           (SELECT coalesce(jsonb_agg(l ORDER BY l.question_key), '[]'::jsonb)
              FROM (SELECT DISTINCT ON (a.question_key)
                           a.question_key, a.value, a.skipped, a.answered_at
                      FROM answers a
                     WHERE a.customer_id = c.customer_id
                     ORDER BY a.question_key, a.answered_at DESC, a.id DESC) l) AS latest_answers,
           (SELECT coalesce(jsonb_agg(h ORDER BY h.started_at DESC, h.id DESC), '[]'::jsonb)
              FROM (SELECT h.id, h.started_at, h.ended_at, h.channel, h.agent, h.outcome,
                           h.notes, h.call_id, h.question_key, h.value, h.skipped, h.waited_seconds
                      FROM contact_history h
                     WHERE h.customer_id = c.customer_id
                       AND h.id IS DISTINCT FROM c.interaction_id
                     ORDER BY h.started_at DESC, h.id DESC
                     LIMIT page_rows) h) AS history,
           to_jsonb(lc) AS last_contact,
           (SELECT jsonb_build_object('count', count(*),
                                      'longest_wait_seconds',
                                      max((i.details ->> 'waited_seconds')::float8),
                                      'latest_at', max(i.started_at))
              FROM interactions i
             WHERE i.customer_id = c.customer_id
               AND i.id IS DISTINCT FROM c.interaction_id
               AND i.outcome = 'abandoned'
               AND i.started_at > coalesce(lc.started_at, '-infinity')) AS attempts_since,
           (SELECT coalesce(jsonb_agg(k ORDER BY k.name, k.id), '[]'::jsonb)
              FROM (SELECT o.id, o.customer_number, o.name,
                           coalesce(o.pinned_tier, o.computed_tier) AS tier,
                           (SELECT i.started_at FROM interactions i
                             WHERE i.customer_id = o.id
                             ORDER BY i.started_at DESC, i.id DESC LIMIT 1) AS last_contact_at
                      FROM customer_phones p
                      JOIN customers o ON o.id = p.customer_id
                     WHERE c.identified_by = 'multiple' AND p.phone_e164 = c.ani
                       AND o.merged_into IS NULL AND o.erased_at IS NULL) k) AS candidates
      FROM calls c
      LEFT JOIN customers cu ON cu.id = c.customer_id
      LEFT JOIN LATERAL (
          SELECT h.id, h.started_at, h.ended_at, h.channel, h.agent, h.outcome, h.notes,
                 h.call_id, h.question_key, h.value, h.skipped, h.waited_seconds
            FROM contact_history h
           WHERE h.customer_id = c.customer_id
             AND h.id IS DISTINCT FROM c.interaction_id
             AND h.outcome IS DISTINCT FROM 'abandoned'
           ORDER BY h.started_at DESC, h.id DESC
           LIMIT 1
      ) lc ON true
     WHERE c.id = reading_call;
END
$$;
