-- Whether a peer's call was hung up before its incoming was stored, learnt in
-- the enqueue's own statement (issue 21: it was a statement of its own after
-- the enqueue, one round trip on every call a peer hands in).
--
-- The race it guards: a hang-up that finds no call writes a tombstone, then
-- looks for the call again; an incoming that found no tombstone stores the
-- call, then looks for a tombstone again. Each side looks after its own write
-- is committed, so one of them sees the other. A tombstone read inside the
-- enqueue would use the statement's snapshot, taken before a hang-up that
-- runs while the call is being stored: both sides would miss each other and
-- the call would wait for a caller who is gone. So:
--
-- * both sides take one transaction-level advisory lock per peer call
--   (telephony_lock): the hang-up before it writes its tombstone, the
--   enqueue after it stored the call, each holding it until it commits;
-- * telephony_hung_up is VOLATILE, so its read takes a fresh snapshot after
--   the lock is granted.
--
-- Either the enqueue locks first, and the hang-up writes (and then looks for
-- the call) only after the call is committed; or the hang-up does, and the
-- enqueue reads after the tombstone is committed. A hash collision between
-- two calls only makes one wait for the other's commit.
CREATE FUNCTION telephony_lock(ext text) RETURNS void
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(ext, 7204));
END
$$;

CREATE FUNCTION telephony_hung_up(ext text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    gone boolean;
BEGIN
    PERFORM telephony_lock(ext);
    SELECT EXISTS (SELECT 1 FROM telephony_tombstones WHERE external_id = ext) INTO gone;
    RETURN gone;
END
$$;
