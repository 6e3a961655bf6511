-- Telephony: where the PBX reaches an agent, hang-ups that came before their
-- call, and the exactly-once claim of connecting a caller to an agent.

-- What the PBX dials to reach the agent: client:ada, sip:ada@pbx.example,
-- +15551230000, PJSIP/1001. Null: the agent takes no telephony calls yet.
ALTER TABLE agents ADD COLUMN endpoint text
    CHECK (endpoint IS NULL OR length(endpoint) BETWEEN 1 AND 200);

-- A hang-up for a call id nobody has handed in yet (webhooks out of order).
-- The late incoming finds it and records the call abandoned instead of
-- queueing a caller who is gone. Rows older than a day are swept away.
CREATE TABLE telephony_tombstones (
    external_id  text PRIMARY KEY CHECK (length(external_id) BETWEEN 1 AND 200),
    cause        text,
    hung_up_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX telephony_tombstones_age ON telephony_tombstones (hung_up_at);

-- Connecting an accepted call to its agent at the peer, claimed by exactly
-- one service instance: the partial unique index lets one live claim exist
-- per call. A failed claim stays as history; a call that goes back to the
-- queue and is accepted again gets a new row.
CREATE TABLE call_bridges (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id       bigint NOT NULL REFERENCES calls (id),
    agent_id      bigint NOT NULL REFERENCES agents (id),
    state         text NOT NULL DEFAULT 'claimed'
                  CHECK (state IN ('claimed', 'connected', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    claimed_by    text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    -- A claim whose instance died is given up after this, so the call is not stuck.
    lease_until   timestamptz NOT NULL,
    connected_at  timestamptz,
    failed_at     timestamptz,
    last_error    text
);

CREATE UNIQUE INDEX call_bridges_live ON call_bridges (call_id) WHERE state <> 'failed';
CREATE INDEX call_bridges_claimed ON call_bridges (lease_until) WHERE state = 'claimed';

-- The connected calls are few; the bridger's catch-up reads them after a lost event.
CREATE INDEX calls_connected ON calls (connected_at) WHERE state = 'connected';
