-- One home for the queue's order: the service key, as one SQL function.
--
-- Every statement that computes a call's key (callcenter/queue/queries.sql:
-- enqueue, set_key, calls_ahead, record_gone_call) calls this function; none
-- writes the arithmetic itself. Its Python twin is
-- callcenter.queue.policy.service_key, which must compute exactly the same
-- instant for the same inputs (tests/integration/test_service_key.py checks
-- it on random inputs): change one, change the other, in a new migration
-- (CREATE OR REPLACE FUNCTION) and in policy.py, in the same commit.
--
--     key = arrival - (credit + queue offset) seconds
--
-- The sum is float8; make_interval turns it into whole microseconds (rounded
-- half to even), all in the interval's time part (no days or months), so the
-- subtraction is exact microsecond arithmetic whatever the session's time
-- zone. STABLE, not IMMUTABLE, because timestamptz - interval is STABLE; a
-- one-expression SQL function is inlined by the planner, so the statements
-- are planned as if the expression were written in them (calls_ahead still
-- compares the claim index with one value per scan).
CREATE FUNCTION queue_service_key(arrival timestamptz, credit_seconds float8,
                                  offset_seconds float8)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN arrival - make_interval(secs => credit_seconds + offset_seconds);
