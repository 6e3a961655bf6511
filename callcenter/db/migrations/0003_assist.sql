-- Interact and Customize: the learning-question bank, the answers customers
-- gave, and the treatment rules an agent's panel shows.

-- A question a supervisor wants answered, one at a time, per customer. Rows
-- come from the bank file (source 'file', replaced when the file is loaded
-- again) or from the API (source 'api', never touched by a file load).
CREATE TABLE questions (
    key            text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    text           text NOT NULL CHECK (length(text) BETWEEN 1 AND 500),
    kind           text NOT NULL CHECK (kind IN ('choice', 'yes_no', 'number', 'text')),
    -- The allowed answers of a choice question; empty for the other kinds.
    choices        text[] NOT NULL DEFAULT '{}',
    -- The range of a number question's answers; NULL: unbounded.
    min_value      double precision,
    max_value      double precision,
    -- When the question may be asked, on earlier answers (callcenter.agent_assist.conditions).
    condition      jsonb,
    -- Smaller is asked first; ties by key.
    priority       integer NOT NULL DEFAULT 100,
    -- A skipped question is not asked again for this many days.
    cooldown_days  integer NOT NULL DEFAULT 7 CHECK (cooldown_days BETWEEN 1 AND 3650),
    -- An answer counts for this many days, then the question is asked again; NULL: forever.
    fresh_days     integer CHECK (fresh_days BETWEEN 1 AND 36500),
    active         boolean NOT NULL DEFAULT true,
    source         text NOT NULL CHECK (source IN ('file', 'api')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'choice') = (cardinality(choices) > 0)),
    CHECK (kind = 'number' OR (min_value IS NULL AND max_value IS NULL)),
    CHECK (min_value <= max_value)
);

-- Every answer and every skip, kept: the latest per question is what counts,
-- the older ones are the history. customers.needs holds the latest values.
CREATE TABLE answers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers (id),
    question_key    text NOT NULL REFERENCES questions (key),
    -- The normalised answer; NULL when the customer skipped the question.
    value           jsonb,
    skipped         boolean NOT NULL DEFAULT false,
    answered_at     timestamptz NOT NULL DEFAULT now(),
    call_id         bigint REFERENCES calls (id),
    interaction_id  bigint REFERENCES interactions (id),
    agent_id        bigint REFERENCES agents (id),
    CHECK (skipped = (value IS NULL)),
    -- A retried wrap-up stores its answer once (answers outside a call have no call_id).
    UNIQUE (call_id, question_key)
);

CREATE INDEX answers_customer_latest ON answers (customer_id, question_key, answered_at DESC);
-- "Has this question been answered?" (a delete becomes a deactivation; the kind
-- cannot change) and the foreign key's check when a question is deleted.
CREATE INDEX answers_question ON answers (question_key);

-- How to treat a caller: shown on the agent's panel when its condition holds.
CREATE TABLE treatments (
    key         text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('offer', 'tone', 'channel', 'escalation')),
    detail      text NOT NULL DEFAULT '' CHECK (length(detail) <= 2000),
    -- NULL: applies to every caller.
    condition   jsonb,
    -- Why the rule exists, shown to the agent with the facts that made it apply.
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    priority    integer NOT NULL DEFAULT 100,
    active      boolean NOT NULL DEFAULT true,
    source      text NOT NULL CHECK (source IN ('file', 'api')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The learning question shown to the agent on this call; an answer given on
-- the call may be to this question even if the bank changed meanwhile. No
-- foreign key: deleting a question would then scan the hot calls table, and a
-- key that no longer exists is refused when an answer names it anyway.
ALTER TABLE calls ADD COLUMN question_key text;
