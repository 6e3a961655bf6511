-- The what-if replay's one read: every finished call of the window, oldest
-- first, with what its handling cost an agent and what the caller is worth.

-- finished_calls --
SELECT c.id,
       c.queue,
       c.tier,
       c.state,
       c.enqueued_at,
       c.connected_at,
       c.ended_at,
       c.wrapped_up_at,
       coalesce(cu.lifetime_value - cu.cost_to_serve, 0)::float8 AS net_value
  FROM calls c
  LEFT JOIN customers cu ON cu.id = c.customer_id
 WHERE c.enqueued_at >= now() - $1::interval
   AND ($2::text IS NULL OR c.queue = $2)
   AND c.state IN ('completed', 'abandoned', 'transferred')
 ORDER BY c.enqueued_at, c.id


-- The replayed queue's own settings: its value credits and service-level seconds.

-- queue_settings --
SELECT credits::text AS credits, service_level_seconds
  FROM queues
 WHERE name = $1
