-- The agent's wrap-up of a call: notes and the learning answer are recorded
-- once per call. The agent may submit it after a wrap-up timer has sent it
-- back to available (typing an answer should not race a timer), so "already
-- wrapped up" is a fact of the call, not of the agent's state.
ALTER TABLE calls ADD COLUMN wrapped_up_at timestamptz;

-- The panel's history shows each contact's learning answer: found by contact.
CREATE INDEX answers_interaction ON answers (interaction_id) WHERE interaction_id IS NOT NULL;

-- A provisional customer (an unknown caller) merged into a real one brings
-- its learning answers along, as it brings its history: the needs profile
-- learned on those first calls is the real customer's. A trigger, so the
-- customers room merges without knowing this room's tables. Where both
-- answered the same question the latest answer counts, in the profile as in
-- the answers (the rule everywhere else).
CREATE FUNCTION answers_follow_merge() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE answers SET customer_id = NEW.merged_into WHERE customer_id = NEW.id;
    UPDATE customers c
       SET needs = c.needs || coalesce(l.needs, '{}'::jsonb)
      FROM (SELECT jsonb_object_agg(question_key, value) AS needs
              FROM (SELECT DISTINCT ON (question_key) question_key, value
                      FROM answers
                     WHERE customer_id = NEW.merged_into AND NOT skipped
                     ORDER BY question_key, answered_at DESC, id DESC) latest) l
     WHERE c.id = NEW.merged_into;
    RETURN NULL;
END
$$;

CREATE TRIGGER answers_follow_merge
    AFTER UPDATE OF merged_into ON customers
    FOR EACH ROW
    WHEN (OLD.merged_into IS NULL AND NEW.merged_into IS NOT NULL)
    EXECUTE FUNCTION answers_follow_merge();

-- A contact as the agent's panel lists it: with the answer given to that
-- contact's learning question. The panel's first page and the older pages
-- read it alike; the planner inlines it.
CREATE VIEW contact_history AS
SELECT i.id, i.customer_id, i.started_at, i.ended_at, i.channel, i.agent, i.outcome, i.notes,
       (i.details ->> 'call_id')::bigint AS call_id,
       an.question_key, an.value, an.skipped
  FROM interactions i
  LEFT JOIN LATERAL (
      SELECT a.question_key, a.value, a.skipped
        FROM answers a
       WHERE a.interaction_id = i.id
       ORDER BY a.id DESC
       LIMIT 1
  ) an ON true;
