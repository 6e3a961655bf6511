-- The agent's wrap-up of a call: notes and the learning answer are recorded
-- once per call. The agent may submit it after a wrap-up timer has sent it
-- back to available (typing an answer should not race a timer), so "already
-- wrapped up" is a fact of the call, not of the agent's state.
ALTER TABLE calls ADD COLUMN wrapped_up_at timestamptz;

-- The panel's history shows each contact's learning answer: found by contact.
CREATE INDEX answers_interaction ON answers (interaction_id) WHERE interaction_id IS NOT NULL;
