-- The audit log of supervisors' and admins' actions (migration 0017).
-- Append-only: these are the only statements that touch it.

-- record --
-- One entry: who $1, channel $2, remote $3, action $4, detail $5, about call $6,
-- agent $7 and queue $8 (each optional).
INSERT INTO action_audit (who, channel, remote, action, detail, call_id, agent_id, queue)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)

-- page --
-- Newest first, filtered by principal $1, call $2, agent $3, queue $4 and time $5
-- (each optional), older than entry $6 when paging.
SELECT id, at, who, channel, remote, action, call_id, agent_id, queue, detail
  FROM action_audit
 WHERE ($1::text IS NULL OR who = $1)
   AND ($2::bigint IS NULL OR call_id = $2)
   AND ($3::bigint IS NULL OR agent_id = $3)
   AND ($4::text IS NULL OR queue = $4)
   AND ($5::timestamptz IS NULL OR at >= $5)
   AND ($6::bigint IS NULL OR id < $6)
 ORDER BY id DESC
 LIMIT $7
