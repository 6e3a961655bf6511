-- How long an agent who is still writing may hold its wrap-up, per queue.
--
-- The wrap-up timer (wrap_up_seconds, 10 s by default) cut agents off mid-note
-- and let the next call ring while they typed. The panel now asks for more
-- time while the agent writes (wrap_up_extend on the agent socket); this is
-- the most it gets, counted from the end of the call (never less than the
-- queue's wrap_up_seconds). 0 turns extensions off.
ALTER TABLE queues
    ADD COLUMN wrap_up_max_seconds double precision NOT NULL DEFAULT 120
        CHECK (wrap_up_max_seconds >= 0 AND wrap_up_max_seconds <= 3600);
