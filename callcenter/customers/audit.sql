-- The audit log of customers' records (migration 0012). Append-only: these are
-- the only statements that touch it, and none changes an entry.

-- record --
-- One entry per customer $5 touched by one action, in one statement.
INSERT INTO customer_audit (who, channel, remote, action, detail, customer_id)
SELECT $1, $2, $3, $4, $6::jsonb, unnest($5::bigint[])

-- page --
-- Newest first, filtered by customer $1, principal $2 and time $3 (each optional),
-- older than entry $4 when paging.
SELECT id, at, customer_id, who, channel, remote, action, detail
  FROM customer_audit
 WHERE ($1::bigint IS NULL OR customer_id = $1)
   AND ($2::text IS NULL OR who = $2)
   AND ($3::timestamptz IS NULL OR at >= $3)
   AND ($4::bigint IS NULL OR id < $4)
 ORDER BY id DESC
 LIMIT $5
