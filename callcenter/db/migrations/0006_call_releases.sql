-- Letting go of the caller at the telephony peer when a call ends on our side
-- (an agent's panel, a supervisor, the queue's maximum wait): without it the
-- caller stays on hold, or in the bridge, after the call is over for us.
--
-- One row per ended call of a peer we command, claimed by exactly one service
-- instance (the primary key): 'claimed' while it sends the hang-up, then
-- 'released', 'gone' (the peer had no such call any more: fine) or 'failed'
-- (every attempt failed; last_error says why). 'not_needed' records that the
-- call needed nothing (the peer reported the hang-up itself, the call went
-- elsewhere, the bridger hung up already) and why, so no pass reads it again.
CREATE TABLE call_releases (
    call_id      bigint PRIMARY KEY REFERENCES calls (id),
    state        text NOT NULL
                 CHECK (state IN ('claimed', 'released', 'gone', 'failed', 'not_needed')),
    note         text,
    attempts     integer NOT NULL DEFAULT 0,
    claimed_by   text NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    -- A claim whose instance died is taken over after this, so no caller is left.
    lease_until  timestamptz NOT NULL,
    done_at      timestamptz,
    last_error   text
);

CREATE INDEX call_releases_claimed ON call_releases (lease_until) WHERE state = 'claimed';
