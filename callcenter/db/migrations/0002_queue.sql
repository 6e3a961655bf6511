-- The hold queue: queues, agents, the call history, the hot table of waiting
-- calls and the offers made to agents.

CREATE TABLE queues (
    name                    text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- value: service key = arrival - credit by tier (bounded); strict and fifo for comparison.
    policy                  text NOT NULL DEFAULT 'value'
                            CHECK (policy IN ('value', 'strict', 'fifo')),
    -- Tier to seconds of credit; empty means the defaults in callcenter.queue.policy.
    credits                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Seconds subtracted from every key of this queue: keys of all queues share
    -- one time base, so an agent serving several queues takes the smallest key.
    offset_seconds          double precision NOT NULL DEFAULT 0
                            CHECK (offset_seconds BETWEEN -3600 AND 3600),
    offer_timeout_seconds   double precision NOT NULL DEFAULT 15
                            CHECK (offer_timeout_seconds BETWEEN 1 AND 300),
    wrap_up_seconds         double precision NOT NULL DEFAULT 10
                            CHECK (wrap_up_seconds BETWEEN 0 AND 3600),
    -- After this wait the call may also go to agents who serve this queue as overflow.
    overflow_after_seconds  double precision CHECK (overflow_after_seconds > 0),
    -- After this wait the call moves to overflow_queue (keeping its key) or ends transferred.
    max_wait_seconds        double precision CHECK (max_wait_seconds > 0),
    overflow_queue          text REFERENCES queues (name),
    -- Service level: the share of calls answered within this many seconds.
    service_level_seconds   double precision NOT NULL DEFAULT 20
                            CHECK (service_level_seconds > 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (overflow_queue IS DISTINCT FROM name)
);

INSERT INTO queues (name) VALUES ('general');

CREATE TABLE agents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    -- SHA-256 of a random 32-byte token: the token has full entropy, so a
    -- fast hash is enough and a stolen table does not give a usable token.
    token_sha256     bytea NOT NULL UNIQUE,
    queues           text[] NOT NULL,
    overflow_queues  text[] NOT NULL DEFAULT '{}',
    state            text NOT NULL DEFAULT 'offline'
                     CHECK (state IN ('offline', 'available', 'offered', 'on_call',
                                      'wrap_up', 'not_responding')),
    state_since      timestamptz NOT NULL DEFAULT now(),
    -- Since when the agent has been free: the longest idle gets the next call.
    idle_since       timestamptz,
    call_id          bigint,
    wrap_up_until    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
) WITH (
    -- Every call rewrites its agent's row four times (offered, on call, wrap-up,
    -- available): a hundred live rows make thousands of dead ones a minute.
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);

CREATE INDEX agents_available ON agents (idle_since, id) WHERE state = 'available';

-- Refreshed every few seconds for each agent whose socket is open; a value
-- older than the grace period takes the agent offline. Apart from agents so
-- the refresh never locks the rows the router is matching on.
CREATE TABLE agent_presence (
    agent_id      bigint PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    last_seen_at  timestamptz NOT NULL
) WITH (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200
);

-- One row per call, for its whole life: the record supervisors and history read.
CREATE TABLE calls (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The peer's call id: a repeated enqueue of it is a no-op.
    external_id      text NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 200),
    queue            text NOT NULL REFERENCES queues (name),
    ani              text,
    customer_id      bigint REFERENCES customers (id),
    identified_by    text,
    tier             text,
    credit_seconds   double precision NOT NULL DEFAULT 0,
    -- A supervisor's credit stays when the caller's value changes.
    credit_explicit  boolean NOT NULL DEFAULT false,
    service_key      timestamptz NOT NULL,
    state            text NOT NULL DEFAULT 'waiting'
                     CHECK (state IN ('waiting', 'connected', 'completed', 'abandoned',
                                      'transferred')),
    agent_id         bigint REFERENCES agents (id),
    -- The estimated wait told at enqueue, kept to measure its accuracy.
    ewt_at_enqueue   double precision,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    connected_at     timestamptz,
    ended_at         timestamptz,
    end_reason       text,
    interaction_id   bigint REFERENCES interactions (id),
    CHECK ((state IN ('completed', 'abandoned', 'transferred')) = (ended_at IS NOT NULL))
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

CREATE INDEX calls_customer ON calls (customer_id, enqueued_at DESC);
CREATE INDEX calls_queue_connected ON calls (queue, connected_at) WHERE connected_at IS NOT NULL;
CREATE INDEX calls_queue_ended ON calls (queue, ended_at) WHERE ended_at IS NOT NULL;

-- The calls waiting right now, apart from the history so the hot table stays
-- small: a row is inserted at enqueue and deleted at answer or hang-up. The
-- churn makes dead tuples fast, so autovacuum runs on this table after a few
-- hundred changes instead of after 20 % of it, without cost-based pauses.
CREATE TABLE waiting_calls (
    call_id           bigint PRIMARY KEY REFERENCES calls (id),
    queue             text NOT NULL,
    service_key       timestamptz NOT NULL,
    enqueued_at       timestamptz NOT NULL,
    widen_at          timestamptz,
    give_up_at        timestamptz,
    offered_to        bigint,
    offer_id          bigint,
    offer_expires_at  timestamptz
) WITH (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);

-- Matches the claim exactly: queue = $1 AND offered_to IS NULL ORDER BY service_key, call_id.
CREATE INDEX waiting_calls_claim ON waiting_calls (queue, service_key, call_id)
    WHERE offered_to IS NULL;
-- Overflow agents ask "has any call of this queue waited past its widen time?".
CREATE INDEX waiting_calls_widen ON waiting_calls (queue, widen_at)
    WHERE offered_to IS NULL AND widen_at IS NOT NULL;
CREATE INDEX waiting_calls_offer ON waiting_calls (offer_id) WHERE offer_id IS NOT NULL;
CREATE INDEX waiting_calls_offered_to ON waiting_calls (offered_to) WHERE offered_to IS NOT NULL;
CREATE INDEX waiting_calls_offer_expiry ON waiting_calls (offer_expires_at)
    WHERE offer_id IS NOT NULL;
CREATE INDEX waiting_calls_give_up ON waiting_calls (give_up_at) WHERE give_up_at IS NOT NULL;

-- Every offer of a call to an agent and how it ended: the audit trail that
-- shows a call was never offered to two agents at once.
CREATE TABLE call_offers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id     bigint NOT NULL REFERENCES calls (id),
    agent_id    bigint NOT NULL REFERENCES agents (id),
    offered_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    result      text CHECK (result IN ('accepted', 'rejected', 'timeout', 'withdrawn')),
    ended_at    timestamptz
);

CREATE INDEX call_offers_call ON call_offers (call_id);
