-- How many calls of a queue wait ahead of a new call's key: the two counts of
-- the queue's ``calls_ahead`` statement, in a function whose plan is generic.
--
-- Why (issue 21): as a prepared statement PostgreSQL re-planned the counts on
-- every enqueue (it judged the custom plan, which sees the key, cheaper), and
-- the planning cost more than the counting: about 140 µs of planning for 12 µs
-- of execution in the routing benchmark, and on its database (10,000 calls
-- waiting) the statement took 1.2-1.4 ms against 0.5-0.7 ms through this
-- function, alternated on one connection, same answers. A generic plan for
-- the whole connection was tried before and rejected (pool.py): it guesses a
-- third of the table for a range on a parameter elsewhere. Here the setting
-- holds for this function's statement only (a function's SET clause), and
-- both counts read a partial index of waiting_calls either way.
--
-- The key is still computed by the caller with queue_service_key (0009), the
-- one place the formula lives.
CREATE FUNCTION queue_calls_ahead(queue_name text, new_key timestamptz) RETURNS bigint
    LANGUAGE plpgsql STABLE
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (SELECT count(*) FROM waiting_calls
             WHERE queue = queue_name AND offered_to IS NULL AND service_key < new_key)
         + (SELECT count(*) FROM waiting_calls
             WHERE offered_to IS NOT NULL AND queue = queue_name AND service_key < new_key);
END
$$;
