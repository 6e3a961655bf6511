-- The telephony peer of a call in its own columns, instead of parsed back out
-- of external_id.
--
-- A call handed in by a telephony adapter is known as external_id
-- '<peer>:<peer call id>' (unique: retried webhooks are no-ops), and three
-- places took that string apart again to learn whom to command: split_part()
-- in three statements of the telephony room (which no index serves, and which
-- any API client could satisfy by posting a call id with a peer's prefix),
-- and Python in the bridger, the releaser and the ARI adapter. Now the
-- gateway writes the peer and its call id when it hands the call in, and
-- everyone reads the columns. external_id stays as it was: the API shows it,
-- and its unique index keeps every adapter idempotent.
--
-- No index on peer: every statement that filters on it finds its rows by
-- another index first (a call's id, the connected calls, the recently ended
-- ones), and one more index would cost every enqueue on the hot table.
ALTER TABLE calls ADD COLUMN peer text, ADD COLUMN peer_call_id text;

-- Existing rows: the rule callcenter.telephony_adapters.base.split_external_id
-- applied (a known peer, a colon, a non-empty rest).
UPDATE calls
   SET peer = split_part(external_id, ':', 1),
       peer_call_id = substr(external_id, strpos(external_id, ':') + 1)
 WHERE split_part(external_id, ':', 1) IN ('generic', 'twilio', 'ari')
   AND length(external_id) > strpos(external_id, ':')
   AND strpos(external_id, ':') > 0;

-- The columns say nothing external_id does not: both or neither, and the same call.
ALTER TABLE calls
    ADD CONSTRAINT calls_peer_matches_external_id
    CHECK ((peer IS NULL) = (peer_call_id IS NULL)
           AND (peer IS NULL OR external_id = peer || ':' || peer_call_id));
