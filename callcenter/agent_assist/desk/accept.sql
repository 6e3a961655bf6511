-- The agent desk's accept: the accept and the caller's panel in one round trip.

-- accept_with_panel --
-- The accept of offer $1 by agent $2 (the SQL function accept_offer, migration
-- 0025, with the router's arguments $1-$7, its row as the column ``accepted``),
-- and the assist panel of the call it connected as the statement ``panel``
-- reads it (assist_panel: its first $8 contacts of the history), audited as
-- read by $9 (agent:<name>) from socket address $10. No row when the offer is
-- not open (any more) or not the agent's: nothing is read, nothing audited.
-- assist_panel runs after accept_offer (a lateral call on its row) and, both
-- being volatile, sees what the accept wrote; the panel reads nothing the
-- accept changes anyway.
SELECT acc AS accepted, p.*
  FROM accept_offer($1, $2, $3, $4, $5, $6, $7) AS acc
  LEFT JOIN LATERAL assist_panel(acc.call_id, $8, $9, $10) AS p ON true
