-- Finding the caller of one call (customers.lookup).

-- find_callers --
-- Live, real customers whose number is $1, who have phone $2, or whose name
-- matches the ILIKE pattern $3 (either may be null), exact matches first, at
-- most $4; each with their last contact. The name match scans the customers:
-- a search is rate-limited per agent and made only during a call.
SELECT c.id, c.customer_number, c.name, coalesce(c.pinned_tier, c.computed_tier) AS tier,
       (SELECT i.started_at FROM interactions i
         WHERE i.customer_id = c.id
         ORDER BY i.started_at DESC, i.id DESC LIMIT 1) AS last_contact_at
  FROM customers c
 WHERE c.merged_into IS NULL AND c.erased_at IS NULL AND NOT c.provisional
   AND (c.customer_number = $1
        OR c.id IN (SELECT p.customer_id FROM customer_phones p WHERE p.phone_e164 = $2::text)
        OR c.name ILIKE $3::text)
 ORDER BY (c.customer_number = $1 OR c.id IN (SELECT p.customer_id FROM customer_phones p
                                               WHERE p.phone_e164 = $2::text)) DESC,
          c.name, c.id
 LIMIT $4
