-- Named statements of the agent-assist room: the question bank, answers,
-- treatments. Loaded once by callcenter.db.sql.

-- lock_bank --
-- Serialises every change to the bank (file loads on several instances at
-- once, API writes), so the checks across entries see what they guard.
SELECT pg_advisory_xact_lock(72003100003)

-- notify_bank --
-- Announces a bank change to every instance; inside a transaction it is sent at commit.
SELECT pg_notify($1, $2)

-- all_questions --
SELECT key, text, kind, choices, min_value, max_value, condition, priority, cooldown_days,
       fresh_days, active, source, created_at, updated_at
  FROM questions
 ORDER BY priority, key

-- all_treatments --
SELECT key, title, kind, detail, condition, reason, priority, active, source, created_at,
       updated_at
  FROM treatments
 ORDER BY priority, key

-- get_question --
SELECT key, text, kind, choices, min_value, max_value, condition, priority, cooldown_days,
       fresh_days, active, source, created_at, updated_at
  FROM questions
 WHERE key = $1

-- get_treatment --
SELECT key, title, kind, detail, condition, reason, priority, active, source, created_at,
       updated_at
  FROM treatments
 WHERE key = $1

-- upsert_question --
-- $12 is the source. A file load passes 'file' and must not touch a row the
-- API owns; the API passes 'api' and takes the row over. Unchanged rows are
-- not rewritten, so a reload of the same file changes nothing.
INSERT INTO questions AS q (key, text, kind, choices, min_value, max_value, condition, priority,
                            cooldown_days, fresh_days, active, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (key) DO UPDATE
   SET text = EXCLUDED.text, kind = EXCLUDED.kind, choices = EXCLUDED.choices,
       min_value = EXCLUDED.min_value, max_value = EXCLUDED.max_value,
       condition = EXCLUDED.condition, priority = EXCLUDED.priority,
       cooldown_days = EXCLUDED.cooldown_days, fresh_days = EXCLUDED.fresh_days,
       active = EXCLUDED.active, source = EXCLUDED.source, updated_at = now()
 WHERE (EXCLUDED.source = 'api' OR q.source = 'file')
   AND (q.text, q.kind, q.choices, q.min_value, q.max_value, q.condition, q.priority,
        q.cooldown_days, q.fresh_days, q.active, q.source)
       IS DISTINCT FROM
       (EXCLUDED.text, EXCLUDED.kind, EXCLUDED.choices, EXCLUDED.min_value, EXCLUDED.max_value,
        EXCLUDED.condition, EXCLUDED.priority, EXCLUDED.cooldown_days, EXCLUDED.fresh_days,
        EXCLUDED.active, EXCLUDED.source)
RETURNING (xmax = 0) AS inserted

-- upsert_treatment --
INSERT INTO treatments AS t (key, title, kind, detail, condition, reason, priority, active,
                             source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (key) DO UPDATE
   SET title = EXCLUDED.title, kind = EXCLUDED.kind, detail = EXCLUDED.detail,
       condition = EXCLUDED.condition, reason = EXCLUDED.reason, priority = EXCLUDED.priority,
       active = EXCLUDED.active, source = EXCLUDED.source, updated_at = now()
 WHERE (EXCLUDED.source = 'api' OR t.source = 'file')
   AND (t.title, t.kind, t.detail, t.condition, t.reason, t.priority, t.active, t.source)
       IS DISTINCT FROM
       (EXCLUDED.title, EXCLUDED.kind, EXCLUDED.detail, EXCLUDED.condition, EXCLUDED.reason,
        EXCLUDED.priority, EXCLUDED.active, EXCLUDED.source)
RETURNING (xmax = 0) AS inserted

-- deactivate_file_questions --
-- Questions a file once held and no longer does: kept (answers point at
-- them), but never asked again.
UPDATE questions SET active = false, updated_at = now()
 WHERE source = 'file' AND active AND NOT (key = ANY ($1::text[]))
RETURNING key

-- deactivate_file_treatments --
UPDATE treatments SET active = false, updated_at = now()
 WHERE source = 'file' AND active AND NOT (key = ANY ($1::text[]))
RETURNING key

-- question_has_answers --
SELECT EXISTS (SELECT 1 FROM answers WHERE question_key = $1)

-- answered_questions --
SELECT q.key FROM questions q WHERE EXISTS (SELECT 1 FROM answers a WHERE a.question_key = q.key)

-- deactivate_question --
UPDATE questions SET active = false, source = 'api', updated_at = now() WHERE key = $1

-- delete_question --
DELETE FROM questions WHERE key = $1

-- delete_treatment --
DELETE FROM treatments WHERE key = $1

-- customer_facts --
-- The customer an answer is for, locked so that two answers for one customer
-- are checked and stored one after the other.
SELECT id, coalesce(pinned_tier, computed_tier) AS tier, lifetime_value, annual_margin,
       merged_into
  FROM customers
 WHERE id = $1
   FOR NO KEY UPDATE

-- customer_profile --
SELECT id, coalesce(pinned_tier, computed_tier) AS tier, lifetime_value, annual_margin,
       merged_into
  FROM customers
 WHERE id = $1

-- latest_answers --
SELECT DISTINCT ON (question_key) question_key, value, skipped, answered_at, id, call_id,
       agent_id, interaction_id
  FROM answers
 WHERE customer_id = $1
 ORDER BY question_key, answered_at DESC, id DESC

-- answer_on_call --
SELECT id, question_key, value, skipped, answered_at, call_id, agent_id, interaction_id
  FROM answers
 WHERE call_id = $1 AND question_key = $2

-- answer_context --
-- What an answer for customer $1 to question $3 on call $2 (or none) is checked
-- against, in one round trip after the customer's lock: the call's customer and the
-- question shown on it (``call_found`` false: no such call), whether the question
-- was answered on that call already, and the latest answer per question (as
-- ``latest_answers`` reads them, as jsonb).
SELECT c.id IS NOT NULL AS call_found, c.customer_id AS call_customer_id,
       c.question_key AS shown,
       EXISTS (SELECT 1 FROM answers e
                WHERE e.call_id = $2 AND e.question_key = $3) AS answered_on_call,
       (SELECT coalesce(jsonb_agg(l ORDER BY l.question_key), '[]'::jsonb)
          FROM (SELECT DISTINCT ON (a.question_key)
                       a.question_key, a.value, a.skipped, a.answered_at
                  FROM answers a
                 WHERE a.customer_id = $1
                 ORDER BY a.question_key, a.answered_at DESC, a.id DESC) l) AS latest
  FROM (SELECT 1) one
  LEFT JOIN calls c ON c.id = $2

-- insert_answer --
-- With the needs profile, which keeps the latest value of every answered question
-- ($4 skipped: no value, the profile stays), in the same round trip.
WITH ins AS (
    INSERT INTO answers (customer_id, question_key, value, skipped, answered_at, call_id,
                         interaction_id, agent_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (call_id, question_key) DO NOTHING
    RETURNING id, question_key, value, skipped, answered_at, call_id, agent_id, interaction_id
), need AS (
    UPDATE customers
       SET needs = needs || jsonb_build_object($2::text, $3::jsonb), updated_at = now()
     WHERE id = $1 AND NOT $4 AND EXISTS (SELECT 1 FROM ins)
)
SELECT id, question_key, value, skipped, answered_at, call_id, agent_id, interaction_id
  FROM ins
