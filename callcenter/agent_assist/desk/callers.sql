-- The agent finds the caller of its own call: which calls allow it, and what a
-- pick records on the call.

-- caller_call --
-- Call $1 as a search or pick reads it, locked so two tabs' picks take turns.
SELECT id, ani, identified_by, customer_id FROM calls WHERE id = $1 FOR UPDATE

-- phone_owner --
-- Whether customer $2 is one of the customers sharing call $1's phone (the
-- candidates its panel lists).
SELECT EXISTS (
    SELECT 1 FROM calls c JOIN customer_phones p ON p.phone_e164 = c.ani
     WHERE c.id = $1 AND p.customer_id = $2
)

-- mark_picked --
-- Agent $2 picked the caller of call $1: that is who identified them and their
-- confirmation (a pick is made after asking), and the learning question is
-- chosen again, for the customer the call now is. $3: the phone linked by the
-- pick, or null.
UPDATE calls
   SET identified_by = 'agent',
       verified_by = 'agent:' || (SELECT name FROM agents WHERE id = $2),
       verified_at = now(),
       question_key = NULL,
       link_phone = $3,
       link_customer_id = CASE WHEN $3::text IS NULL THEN NULL ELSE link_customer_id END
 WHERE id = $1
RETURNING verified_by
