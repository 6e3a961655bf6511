-- A contact as the agent's panel lists it now also says how long the caller
-- waited (kept in the interaction's details since 0002): a run of abandoned
-- attempts is shown as one line with its longest wait, and the last
-- conversation stays on top instead of below a wall of empty rows.
-- Added at the end, so CREATE OR REPLACE keeps the view's other columns.
CREATE OR REPLACE VIEW contact_history AS
SELECT i.id, i.customer_id, i.started_at, i.ended_at, i.channel, i.agent, i.outcome, i.notes,
       (i.details ->> 'call_id')::bigint AS call_id,
       an.question_key, an.value, an.skipped,
       (i.details ->> 'waited_seconds')::float8 AS waited_seconds
  FROM interactions i
  LEFT JOIN LATERAL (
      SELECT a.question_key, a.value, a.skipped
        FROM answers a
       WHERE a.interaction_id = i.id
       ORDER BY a.id DESC
       LIMIT 1
  ) an ON true;
