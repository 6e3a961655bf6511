-- Named statements of the customers room. Loaded once by callcenter.db.sql.

-- identify_candidates --
-- Everyone the calling number and the typed customer number point at, in one
-- round trip: this is on the path of every call. The query is the SQL function
-- of the same name (migration 0023), which the telephony gateway's first
-- look-up of an incoming call reads too (``peer_call_identify``).
SELECT matched, id, customer_number, name, tier, provisional
  FROM identify_candidates($1, $2)

-- phone_owners --
SELECT c.id, c.customer_number, c.name, coalesce(c.pinned_tier, c.computed_tier) AS tier,
       c.provisional
  FROM customer_phones p
  JOIN customers c ON c.id = p.customer_id
 WHERE p.phone_e164 = $1 AND c.merged_into IS NULL
 ORDER BY c.id

-- pick_candidate --
-- A customer an agent picked as the caller: a live record (not merged, not erased).
SELECT c.id, c.customer_number, c.name, coalesce(c.pinned_tier, c.computed_tier) AS tier,
       c.provisional
  FROM customers c
 WHERE c.id = $1 AND c.merged_into IS NULL AND c.erased_at IS NULL

-- lock_phone --
-- Serialises the writes for one number (two first calls from it at once must
-- not create two provisional customers).
SELECT pg_advisory_xact_lock(hashtextextended($1, 7203))

-- link_phone --
INSERT INTO customer_phones (phone_e164, customer_id, source, linked_via)
VALUES ($1, $2, $3, $4)
ON CONFLICT (phone_e164, customer_id) DO NOTHING

-- phone_taken_by --
-- A real customer other than $2 who has phone $1 already: giving it to $2 as
-- well would make it a shared number. Provisional records do not count.
SELECT c.id, c.customer_number
  FROM customer_phones p
  JOIN customers c ON c.id = p.customer_id
 WHERE p.phone_e164 = $1 AND c.id <> $2 AND NOT c.provisional AND c.merged_into IS NULL
 ORDER BY c.id
 LIMIT 1

-- insert_conflict --
INSERT INTO identity_conflicts (phone_e164, phone_customer_ids, typed_customer_id, customer_number)
VALUES ($1, $2, $3, $4)
RETURNING id

-- provisional_for_phone --
-- A first call's provisional customer for phone $1 (tier $2) with the phone
-- linked, in one statement under the phone's lock (migration 0029); no row when
-- the number has a live owner by then.
SELECT id, customer_number, name, tier, provisional FROM provisional_for_phone($1, $2)

-- insert_customer --
INSERT INTO customers (customer_number, name, email, lifetime_value, annual_margin,
                       cost_to_serve, computed_tier)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id

-- get_customer --
SELECT c.*,
       coalesce(
         (SELECT jsonb_agg(jsonb_build_object(
                   'number', p.phone_e164, 'source', p.source,
                   'linked_at', p.linked_at, 'linked_via', p.linked_via)
                   ORDER BY p.linked_at, p.phone_e164)
            FROM customer_phones p WHERE p.customer_id = c.id),
         '[]'::jsonb) AS phones
  FROM customers c
 WHERE c.id = $1

-- get_customer_audited --
-- get_customer that also writes the audit entry of the read or change it
-- answers (who $2, channel $3, remote $4, action $5, detail $6): no extra round
-- trip, and no entry for a customer that does not exist.
WITH audit AS (
    INSERT INTO customer_audit (customer_id, who, channel, remote, action, detail)
    SELECT id, $2, $3, $4, $5, $6::jsonb FROM customers WHERE id = $1
)
SELECT c.*,
       coalesce(
         (SELECT jsonb_agg(jsonb_build_object(
                   'number', p.phone_e164, 'source', p.source,
                   'linked_at', p.linked_at, 'linked_via', p.linked_via)
                   ORDER BY p.linked_at, p.phone_e164)
            FROM customer_phones p WHERE p.customer_id = c.id),
         '[]'::jsonb) AS phones
  FROM customers c
 WHERE c.id = $1

-- lock_customer --
SELECT id, lifetime_value, annual_margin, cost_to_serve, provisional, merged_into
  FROM customers WHERE id = $1 FOR UPDATE

-- customer_id_by_number --
SELECT id FROM customers WHERE customer_number = $1 AND merged_into IS NULL

-- customer_ids_by_phone --
SELECT p.customer_id
  FROM customer_phones p JOIN customers c ON c.id = p.customer_id
 WHERE p.phone_e164 = $1 AND c.merged_into IS NULL
 ORDER BY p.customer_id

-- list_customer_ids --
SELECT id FROM customers
 WHERE id > $1 AND merged_into IS NULL
 ORDER BY id
 LIMIT $2

-- update_customer --
UPDATE customers
   SET customer_number = $2, name = $3, email = $4, lifetime_value = $5,
       annual_margin = $6, cost_to_serve = $7, computed_tier = $8,
       provisional = provisional AND $2::text IS NULL,
       updated_at = now()
 WHERE id = $1

-- delete_crm_phones --
DELETE FROM customer_phones WHERE customer_id = $1 AND source = 'crm'

-- delete_phone --
DELETE FROM customer_phones WHERE customer_id = $1 AND phone_e164 = $2

-- pin_tier --
UPDATE customers
   SET pinned_tier = $2, pin_reason = $3, pinned_by = $4, pinned_at = now(), updated_at = now()
 WHERE id = $1

-- unpin_tier --
UPDATE customers
   SET pinned_tier = NULL, pin_reason = NULL, pinned_by = NULL, pinned_at = NULL,
       updated_at = now()
 WHERE id = $1

-- merge_move_phones --
-- The provisional customer's numbers now belong to the real one, as links.
INSERT INTO customer_phones (phone_e164, customer_id, source, linked_via)
SELECT phone_e164, $2, 'linked', 'merge'
  FROM customer_phones WHERE customer_id = $1
ON CONFLICT (phone_e164, customer_id) DO NOTHING

-- merge_drop_phones --
DELETE FROM customer_phones WHERE customer_id = $1

-- merge_move_history --
UPDATE interactions SET customer_id = $2 WHERE customer_id = $1

-- merge_mark --
UPDATE customers SET merged_into = $2, updated_at = now() WHERE id = $1

-- history_page --
SELECT id, channel, started_at, ended_at, agent, outcome, notes, identified_by, details
  FROM interactions
 WHERE customer_id = $1
   AND ($2::bigint IS NULL
        OR (started_at, id) < (SELECT started_at, id FROM interactions WHERE id = $2))
 ORDER BY started_at DESC, id DESC
 LIMIT $3

-- list_conflicts --
SELECT id, phone_e164 AS phone, phone_customer_ids, typed_customer_id, customer_number, created_at
  FROM identity_conflicts
 WHERE $1::bigint IS NULL OR typed_customer_id = $1 OR $1 = ANY (phone_customer_ids)
 ORDER BY id DESC
 LIMIT $2

-- import_stage --
-- Per-connection staging tables for a CRM import; COPY fills them per batch.
CREATE TEMP TABLE IF NOT EXISTS import_rows (
    line            integer NOT NULL,
    customer_number text NOT NULL,
    name            text NOT NULL,
    email           text,
    lifetime_value  numeric(14, 2) NOT NULL,
    annual_margin   numeric(14, 2) NOT NULL,
    cost_to_serve   numeric(14, 2) NOT NULL,
    computed_tier   text NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS import_phones (
    customer_number text NOT NULL,
    phone_e164      text NOT NULL
) ON COMMIT DELETE ROWS

-- import_upsert --
-- Insert new customers, update changed ones, leave identical ones untouched
-- (so a second run of the same file changes nothing, not even updated_at).
INSERT INTO customers AS c (customer_number, name, email, lifetime_value, annual_margin,
                            cost_to_serve, computed_tier)
SELECT customer_number, name, email, lifetime_value, annual_margin, cost_to_serve, computed_tier
  FROM import_rows
ON CONFLICT (customer_number) DO UPDATE
   SET name = EXCLUDED.name, email = EXCLUDED.email,
       lifetime_value = EXCLUDED.lifetime_value, annual_margin = EXCLUDED.annual_margin,
       cost_to_serve = EXCLUDED.cost_to_serve, computed_tier = EXCLUDED.computed_tier,
       provisional = false, updated_at = now()
 WHERE (c.name, c.email, c.lifetime_value, c.annual_margin, c.cost_to_serve, c.computed_tier)
       IS DISTINCT FROM
       (EXCLUDED.name, EXCLUDED.email, EXCLUDED.lifetime_value, EXCLUDED.annual_margin,
        EXCLUDED.cost_to_serve, EXCLUDED.computed_tier)
RETURNING (xmax = 0) AS inserted

-- import_link_phones --
WITH linked AS (
    INSERT INTO customer_phones (phone_e164, customer_id, source, linked_via)
    SELECT p.phone_e164, c.id, 'crm', 'import'
      FROM import_phones p
      JOIN customers c ON c.customer_number = p.customer_number
    ON CONFLICT (phone_e164, customer_id) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM linked
