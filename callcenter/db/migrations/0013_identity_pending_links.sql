-- A typed customer number no longer links a phone on its own word (issue 14,
-- hole 4). A known number typed from a phone nobody has (or only an unknown
-- caller's provisional record has) serves the call as that customer for this
-- call only; the link it would make waits on the call until the agent
-- confirms who is calling (the socket's `verify`), which is recorded here with
-- who and when. Only then is the phone linked (and a provisional record
-- merged), so one call with someone else's number no longer makes every later
-- call from that phone theirs.
--
-- Nullable columns without defaults: adding them rewrites nothing, and the
-- enqueue on this hot table writes them only for a pending link.
ALTER TABLE calls
    ADD COLUMN link_phone text,
    ADD COLUMN link_customer_id bigint REFERENCES customers (id),
    ADD COLUMN verified_by text,
    ADD COLUMN verified_at timestamptz;

-- A pending link names both the phone and the customer; a verification both who and when.
ALTER TABLE calls
    ADD CONSTRAINT calls_link_complete
    CHECK ((link_phone IS NULL) = (link_customer_id IS NULL)),
    ADD CONSTRAINT calls_verified_complete
    CHECK ((verified_by IS NULL) = (verified_at IS NULL));
