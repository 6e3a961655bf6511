-- What the assist panel reads. The bank (questions and treatment rules) is
-- held in memory by the panel builder; these statements read the customer's
-- side only, each in one round trip.

-- panel --
-- Everything the panel shows for call $1, in one statement: the call, its
-- customer with phones, the latest answer to each question (the needs profile
-- and what question selection works from), and the first $2 contacts of the
-- history, newest first, each with the answer given to that contact's question;
-- for a shared number (multiple), the customers sharing it, to pick the caller from.
-- On top of the history, the last real contact (anything but a caller who hung
-- up waiting) and the abandoned attempts since it, counted with their longest
-- wait, so a wall of abandoned rows never hides the last conversation.
-- The call's own contact (recorded when it ended, during wrap-up) is left out:
-- the history is what came before.
-- With a reader $3 (agent:<name>, from socket address $4), the same statement
-- writes the read to the customer audit log (migration 0012): no extra round
-- trip on the path from accept to the agent's screen.
WITH audit AS (
    INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
    SELECT c.customer_id, $3, 'panel', $4, 'panel', jsonb_build_object('call_id', c.id)
      FROM calls c
     WHERE c.id = $1 AND c.customer_id IS NOT NULL AND $3::text IS NOT NULL
), audit_candidates AS (
    INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
    SELECT p.customer_id, $3, 'panel', $4, 'panel_candidates', jsonb_build_object('call_id', c.id)
      FROM calls c
      JOIN customer_phones p ON p.phone_e164 = c.ani
     WHERE c.id = $1 AND c.identified_by = 'multiple' AND $3::text IS NOT NULL
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
                 LIMIT $2) h) AS history,
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
 WHERE c.id = $1

-- call_recognised --
-- How call $1's caller was recognised, for the answer to a ``verify``.
SELECT c.identified_by, c.ani, c.link_phone, c.verified_by, c.verified_at, cu.customer_number
  FROM calls c
  LEFT JOIN customers cu ON cu.id = c.customer_id
 WHERE c.id = $1

-- history_page --
-- The contacts of call $1's customer older than interaction $2, newest first;
-- with a reader $4 (from $5), the read is written to the audit log, as for the panel.
WITH audit AS (
    INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
    SELECT c.customer_id, $4, 'panel', $5, 'panel_history',
           jsonb_build_object('call_id', c.id, 'before', $2::bigint)
      FROM calls c
     WHERE c.id = $1 AND c.customer_id IS NOT NULL AND $4::text IS NOT NULL
)
SELECT h.id, h.started_at, h.ended_at, h.channel, h.agent, h.outcome, h.notes, h.call_id,
       h.question_key, h.value, h.skipped, h.waited_seconds
  FROM calls c
  JOIN contact_history h ON h.customer_id = c.customer_id
 WHERE c.id = $1
   AND h.id IS DISTINCT FROM c.interaction_id
   AND (h.started_at, h.id) < (SELECT started_at, id FROM interactions WHERE id = $2)
 ORDER BY h.started_at DESC, h.id DESC
 LIMIT $3

-- set_question --
-- The question shown on this call: chosen once, so a reconnecting panel shows
-- the same one and the wrap-up is checked against it.
UPDATE calls SET question_key = coalesce(question_key, $2) WHERE id = $1
RETURNING question_key
