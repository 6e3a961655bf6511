-- Customers' data rights: export (GDPR art. 15), erasure (art. 17) and the
-- retention of free text. Erasure and retention reach every table that holds a
-- customer's identifiers or free text (calls' calling numbers, contacts' notes,
-- text answers), whichever room writes them: an erasure that misses a copy is
-- no erasure. What the queue's statistics need (waits, outcomes, tiers, the
-- customer id itself) is kept.

-- lock_calls_for_erase --
-- The calls the erasure will change (their calling number, a pending link's
-- phone), locked before the customer: a wrap-up locks its call, then the
-- customer (finish_wrap_up, migration 0022), and an erasure that locked the
-- customer first and then the call deadlocked with the wrap-up of that
-- customer's last call. The customers are the one named and those merged
-- into it, as ``lock_for_erase`` reads them.
SELECT k.id FROM calls k
 WHERE (k.customer_id IN (SELECT m.id FROM customers m WHERE m.id = $1 OR m.merged_into = $1)
        OR k.link_customer_id IN (SELECT m.id FROM customers m
                                   WHERE m.id = $1 OR m.merged_into = $1))
   AND (k.ani IS NOT NULL OR k.link_phone IS NOT NULL)
 ORDER BY k.id
   FOR NO KEY UPDATE

-- lock_for_erase --
-- The customer, locked: a call being enqueued for it (its insert takes a key
-- share lock on this row) waits until the erasure is done, or is seen here as
-- live. The customers merged into it are erased with it.
SELECT c.id, c.erased_at, c.customer_number,
       array(SELECT m.id FROM customers m WHERE m.id = c.id OR m.merged_into = c.id) AS ids,
       (SELECT array_agg(k.id ORDER BY k.id)
          FROM calls k
         WHERE k.customer_id IN (SELECT m.id FROM customers m
                                  WHERE m.id = c.id OR m.merged_into = c.id)
           AND k.state IN ('waiting', 'connected')) AS live_calls
  FROM customers c
 WHERE c.id = $1
   FOR UPDATE

-- erase --
-- Everything that identifies customers $1 (the first one named, whose number
-- becomes the anonymous token $2) or is free text about them, in one
-- statement, with its audit entry (who $3, channel $4, remote $5). Text
-- answers become "" (the row, its question and when stay); answers to choice,
-- yes/no and number questions are not free text and stay.
WITH phones AS (
    DELETE FROM customer_phones WHERE customer_id = ANY ($1::bigint[])
    RETURNING 1
), notes AS (
    UPDATE interactions SET notes = NULL
     WHERE customer_id = ANY ($1::bigint[]) AND notes IS NOT NULL
    RETURNING 1
), text_answers AS (
    UPDATE answers a SET value = '""'::jsonb
      FROM questions q
     WHERE q.key = a.question_key AND q.kind = 'text'
       AND a.customer_id = ANY ($1::bigint[])
       AND a.value IS NOT NULL AND a.value <> '""'::jsonb
    RETURNING 1
), calling_numbers AS (
    -- The calling number, and a pending link's phone: a later verify must find
    -- nothing to link to an erased customer.
    UPDATE calls SET ani = NULL, link_phone = NULL, link_customer_id = NULL
     WHERE (customer_id = ANY ($1::bigint[]) OR link_customer_id = ANY ($1::bigint[]))
       AND (ani IS NOT NULL OR link_phone IS NOT NULL)
    RETURNING 1
), conflicts AS (
    UPDATE identity_conflicts
       SET phone_e164 = '',
           customer_number = CASE WHEN typed_customer_id = ANY ($1::bigint[]) THEN $2
                                  ELSE customer_number END
     WHERE (typed_customer_id = ANY ($1::bigint[]) OR phone_customer_ids && $1::bigint[])
       AND (phone_e164 <> ''
            OR typed_customer_id = ANY ($1::bigint[]) AND customer_number <> $2)
    RETURNING 1
), record AS (
    UPDATE customers c
       SET name = '', email = NULL,
           customer_number = CASE WHEN c.id = ($1::bigint[])[1] THEN $2 ELSE NULL END,
           pin_reason = CASE WHEN c.pin_reason IS NULL THEN NULL ELSE 'erased' END,
           needs = coalesce(
             (SELECT jsonb_object_agg(e.key, CASE WHEN q.kind = 'text' THEN '""'::jsonb
                                                  ELSE e.value END)
                FROM jsonb_each(c.needs) e
                LEFT JOIN questions q ON q.key = e.key), '{}'::jsonb),
           erased_at = now(), updated_at = now()
     WHERE c.id = ANY ($1::bigint[])
    RETURNING 1
), counts AS (
    SELECT (SELECT count(*) FROM phones) AS phones,
           (SELECT count(*) FROM notes) AS notes,
           (SELECT count(*) FROM text_answers) AS text_answers,
           (SELECT count(*) FROM calling_numbers) AS calling_numbers,
           (SELECT count(*) FROM conflicts) AS conflicts,
           (SELECT count(*) FROM record) AS records
), audit AS (
    INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
    SELECT ($1::bigint[])[1], $3, $4, $5, 'erase', to_jsonb(counts) FROM counts
)
SELECT counts.*, now() AS erased_at FROM counts

-- export_calls --
-- The calls of customers $1, with what the queue recorded about each.
SELECT k.id, k.customer_id, k.queue, k.ani, k.identified_by, k.tier, k.state, k.end_reason,
       k.enqueued_at, k.connected_at, k.ended_at, a.name AS agent
  FROM calls k
  LEFT JOIN agents a ON a.id = k.agent_id
 WHERE k.customer_id = ANY ($1::bigint[])
 ORDER BY k.enqueued_at DESC, k.id DESC

-- export_history --
SELECT id, channel, started_at, ended_at, agent, outcome, notes, identified_by, details
  FROM interactions
 WHERE customer_id = ANY ($1::bigint[])
 ORDER BY started_at DESC, id DESC

-- export_answers --
SELECT id, question_key, value, skipped, answered_at, call_id, interaction_id
  FROM answers
 WHERE customer_id = ANY ($1::bigint[])
 ORDER BY answered_at DESC, id DESC

-- export_conflicts --
SELECT id, phone_e164 AS phone, phone_customer_ids, typed_customer_id, customer_number, created_at
  FROM identity_conflicts
 WHERE typed_customer_id = ANY ($1::bigint[]) OR phone_customer_ids && $1::bigint[]
 ORDER BY id DESC

-- export_ids --
SELECT array(SELECT m.id FROM customers m WHERE m.id = $1 OR m.merged_into = $1 ORDER BY m.id)

-- retention --
-- Call notes and text answers older than $1 days lose their text; the rows
-- stay (the history and the statistics keep their shape). The needs profile
-- keeps a text answer's latest value: it is cleared when no newer answer to
-- that question is left. One audit entry per customer touched (who $2).
WITH cutoff AS (
    SELECT now() - make_interval(days => $1) AS at
), notes AS (
    UPDATE interactions i SET notes = NULL
      FROM cutoff
     WHERE i.notes IS NOT NULL AND i.started_at < cutoff.at
    RETURNING i.customer_id
), text_answers AS (
    UPDATE answers a SET value = '""'::jsonb
      FROM questions q, cutoff
     WHERE q.key = a.question_key AND q.kind = 'text'
       AND a.answered_at < cutoff.at
       AND a.value IS NOT NULL AND a.value <> '""'::jsonb
    RETURNING a.customer_id, a.question_key
), stale_needs AS (
    SELECT DISTINCT t.customer_id, t.question_key
      FROM text_answers t, cutoff
     WHERE NOT EXISTS (SELECT 1 FROM answers b
                        WHERE b.customer_id = t.customer_id
                          AND b.question_key = t.question_key
                          AND b.answered_at >= cutoff.at AND NOT b.skipped)
), needs AS (
    UPDATE customers c
       SET needs = c.needs || s.cleared
      FROM (SELECT customer_id, jsonb_object_agg(question_key, '""'::jsonb) AS cleared
              FROM stale_needs GROUP BY customer_id) s
     WHERE c.id = s.customer_id
    RETURNING 1
), touched AS (
    SELECT customer_id FROM notes UNION SELECT customer_id FROM text_answers
), audit AS (
    INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
    SELECT customer_id, $2, $3, NULL, 'retention', jsonb_build_object('days', $1::integer)
      FROM touched
)
SELECT (SELECT count(*) FROM notes) AS notes,
       (SELECT count(*) FROM text_answers) AS text_answers,
       (SELECT count(*) FROM touched) AS customers
