-- Keep your place: a callback instead of holding, and a redial that resumes.
--
-- A caller offered a callback (the queue's rule, queues.callback) who takes it
-- hangs up and stays in the queue as a *virtual call*: the same calls row, the
-- same waiting_calls row with the same service key, so the claim (offer_next)
-- is untouched. callback_number says whom to ring when an agent accepts. A
-- ring that nobody answers frees the agent and takes the call out of the
-- waiting table until callback_retry_at, when the router's sweep puts it back
-- with its key; after the queue's attempts it ends abandoned (callback_failed).
--
-- A redial (the same customer, the same queue, within the queue's
-- redial_window_seconds of an abandoned call) is enqueued at the arrival of
-- the call it resumes (resumed_arrival), so with the same credit it gets the
-- old key exactly, and every later re-key (identify, bump) keeps that place.
ALTER TABLE queues
    -- Null: no callbacks. Else the rule (callcenter.queue.models.CallbackRule).
    ADD COLUMN callback jsonb,
    ADD COLUMN redial_window_seconds double precision
        CHECK (redial_window_seconds > 0 AND redial_window_seconds <= 86400);

ALTER TABLE calls
    ADD COLUMN callback_number text,
    ADD COLUMN callback_requested_at timestamptz,
    -- Attempts rung so far (answered or not).
    ADD COLUMN callback_attempts integer NOT NULL DEFAULT 0,
    -- Set while the call waits out the delay after a ring nobody answered (it
    -- has no waiting row then); the router's sweep puts it back when due.
    ADD COLUMN callback_retry_at timestamptz,
    -- The caller picked up the current attempt: from now on their hang-up ends
    -- the conversation (before, the hang-up of the first leg changes nothing).
    ADD COLUMN callback_answered_at timestamptz,
    ADD COLUMN resumed_from bigint,
    ADD COLUMN resumed_arrival timestamptz,
    ADD COLUMN waited_before_seconds double precision,
    ADD CONSTRAINT calls_callback_complete
        CHECK ((callback_number IS NULL) = (callback_requested_at IS NULL)),
    ADD CONSTRAINT calls_resumed_complete
        CHECK ((resumed_from IS NULL) = (resumed_arrival IS NULL));

-- The redial look-up: a customer's abandoned calls in a queue, newest first.
CREATE INDEX calls_redial ON calls (customer_id, queue, ended_at DESC)
    WHERE state = 'abandoned';
-- A call is resumed once: the look-up skips calls another call resumed.
CREATE INDEX calls_resumed_from ON calls (resumed_from) WHERE resumed_from IS NOT NULL;
-- The sweep's due retries.
CREATE INDEX calls_callback_retry ON calls (callback_retry_at)
    WHERE callback_retry_at IS NOT NULL;

-- Every ring of a callback, for the call's timeline and the retry count. The
-- bridger writes it when it rings (bridge_id: its claim); the peer's report,
-- or the ring's own outcome, closes it. No foreign keys, like the other
-- records of a call's life on the hot path.
CREATE TABLE callback_attempts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id    bigint NOT NULL,
    bridge_id  bigint NOT NULL UNIQUE,
    agent_id   bigint NOT NULL,
    number     text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    -- The peer's id of the outbound leg, once it is known.
    leg        text,
    result     text CHECK (result IN ('answered', 'no_answer', 'failed', 'cancelled')),
    cause      text,
    ended_at   timestamptz
)
WITH (autovacuum_analyze_scale_factor = 1, autovacuum_analyze_threshold = 1000);
CREATE INDEX callback_attempts_call ON callback_attempts (call_id, id);
CREATE INDEX callback_attempts_leg ON callback_attempts (leg) WHERE leg IS NOT NULL;
