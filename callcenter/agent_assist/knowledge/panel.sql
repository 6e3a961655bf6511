-- What the assist panel reads. The bank (questions and treatment rules) is
-- held in memory by the panel builder; these statements read the customer's
-- side only, each in one round trip.

-- panel --
-- Everything the panel shows for call $1, in one round trip: the SQL function
-- assist_panel (migration 0025), which says what it reads; the first $2
-- contacts of the history. With a reader $3 (agent:<name>, from socket
-- address $4), the same statement writes the read to the customer audit log.
-- An accept on the agent desk reads it with the accept (desk/accept.sql).
SELECT * FROM assist_panel($1, $2, $3, $4)

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
