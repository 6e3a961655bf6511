-- The audit log of supervisors' and admins' actions (migration 0015).
-- Append-only: these are the only statements that touch it.

-- record --
-- One entry: who $1, channel $2, remote $3, action $4, detail $5, about call $6,
-- agent $7 and queue $8 (each optional).
INSERT INTO action_audit (who, channel, remote, action, detail, call_id, agent_id, queue)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)

-- of_call --
-- Every entry about call $1, oldest first (its timeline).
SELECT id, at, who, channel, action, call_id, agent_id, queue, detail
  FROM action_audit
 WHERE call_id = $1
 ORDER BY id
