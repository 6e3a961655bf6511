-- What lets a new call be identified, valued, counted and stored in fewer
-- round trips (issue 21: webhook in to offer took 8 statements).
--
-- queue_estimated_wait: the estimated wait a call is told at enqueue, computed
-- inside the enqueue statement from the calls ahead (queue_calls_ahead, 0019,
-- counted in that same statement) and the queue's rates, which the service
-- reads at most once a second per queue and passes in. The calls ahead were a
-- statement of their own before the enqueue, only because the estimate is
-- stored with the call. The formula is the exact twin of
-- callcenter.queue.ewt.wait_for, which every other reader of an estimate uses;
-- tests/integration/test_enqueue_sql.py holds the two equal on many inputs.
-- ``rate`` is null (no basis for a rate) or positive, as ``service_rate`` is.
CREATE FUNCTION queue_estimated_wait(ahead bigint, staffed bigint, available bigint,
                                     rate float8) RETURNS float8
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN staffed <= 0 THEN NULL
                WHEN ahead + 1 - available <= 0 THEN 0.0::float8
                WHEN rate IS NULL THEN NULL
                ELSE (ahead + 1 - available)::float8 / rate END
$$;

-- identify_candidates: everyone a calling number (normalised, E.164) and a
-- typed customer number point at; the pure rules that decide among them stay
-- in callcenter.customers.identity.decide. A function so that the one query has
-- one home and two callers: the customers room's own statement, and the
-- telephony gateway's first look-up of an incoming call, which reads our call,
-- the tombstone and these candidates in one round trip (they were two). A
-- LANGUAGE sql function with one query is inlined by the planner.
CREATE FUNCTION identify_candidates(phone text, typed text)
    RETURNS TABLE (matched text, id bigint, customer_number text, name text, tier text,
                   provisional boolean)
    LANGUAGE sql STABLE
AS $$
    SELECT 'phone', c.id, c.customer_number, c.name,
           coalesce(c.pinned_tier, c.computed_tier), c.provisional
      FROM customer_phones p
      JOIN customers c ON c.id = p.customer_id
     WHERE p.phone_e164 = identify_candidates.phone AND c.merged_into IS NULL
    UNION ALL
    SELECT 'customer_number', c.id, c.customer_number, c.name,
           coalesce(c.pinned_tier, c.computed_tier), c.provisional
      FROM customers c
     WHERE c.customer_number = identify_candidates.typed AND c.merged_into IS NULL
$$;
