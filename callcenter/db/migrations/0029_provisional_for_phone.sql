-- A first call from a number nobody has: its provisional customer in one statement.
--
-- Why (issue 21): ``identity.resolve`` wrote it in a transaction of its own,
-- BEGIN, the phone's lock, the owners read again under it, the customer, the
-- phone's link, COMMIT: six round trips on every call from an unknown number
-- (a fifth of the demo's traffic). The policy stays in Python
-- (``identity.decide``): it asks for this write only when the number has no
-- live owner and no customer number was typed, and under the lock that is
-- exactly "no live owner", which is what this function checks. When someone
-- linked the number first it writes nothing and returns no row, and the
-- caller decides again under the lock, as for any other write.
--
-- The lock is the one ``lock_phone`` takes (customers/queries.sql): the same
-- key, so the two serialise every write for one number.
CREATE FUNCTION provisional_for_phone(phone text, lowest_tier text)
    RETURNS TABLE (id bigint, customer_number text, name text, tier text, provisional boolean)
    LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    made record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(provisional_for_phone.phone, 7203));
    IF EXISTS (SELECT 1 FROM customer_phones p JOIN customers c ON c.id = p.customer_id
                WHERE p.phone_e164 = provisional_for_phone.phone AND c.merged_into IS NULL) THEN
        RETURN;
    END IF;
    INSERT INTO customers AS c (name, computed_tier, provisional)
    VALUES ('', provisional_for_phone.lowest_tier, true)
    RETURNING c.id, c.customer_number, c.name, c.computed_tier, c.provisional INTO made;
    INSERT INTO customer_phones (phone_e164, customer_id, source, linked_via)
    VALUES (provisional_for_phone.phone, made.id, 'provisional', 'first_call')
    ON CONFLICT (phone_e164, customer_id) DO NOTHING;
    RETURN QUERY SELECT made.id, made.customer_number, made.name, made.computed_tier,
                        made.provisional;
END
$$;
