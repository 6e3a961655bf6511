-- People who sign in (supervisors and admins), the credentials that stand for
-- them or for an integration, and an end to agent tokens that live for ever.

CREATE TABLE people (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role           text NOT NULL CHECK (role IN ('supervisor', 'admin')),
    -- argon2id, with its parameters and salt in the string.
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Set: the person can no longer sign in, and their sessions stop working.
    removed_at     timestamptz
);

-- A bearer token's SHA-256 (tokens are 32 random bytes, so a fast hash is
-- enough), what it stands for, and until when. A session stands for a person
-- (whose role counts as it is now); an integration token names its own role.
CREATE TABLE credentials (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_sha256   bytea NOT NULL UNIQUE,
    kind           text NOT NULL CHECK (kind IN ('session', 'integration')),
    person_id      bigint REFERENCES people (id) ON DELETE CASCADE,
    label          text CHECK (label ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role           text CHECK (role IN ('supervisor', 'admin')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    CHECK (kind = 'session' AND person_id IS NOT NULL AND role IS NULL
        OR kind = 'integration' AND person_id IS NULL AND label IS NOT NULL AND role IS NOT NULL)
);

CREATE INDEX credentials_of_person ON credentials (person_id) WHERE person_id IS NOT NULL;

-- An agent's token expires (NULL: never, for agents made before this), and a
-- removed agent keeps its history but can no longer connect.
ALTER TABLE agents
    ADD COLUMN token_expires_at timestamptz,
    ADD COLUMN removed_at timestamptz;

-- Who pinned a tier or bumped a call is the signed-in principal, recorded by
-- the server; ``pinned_by`` was whatever the client typed.
ALTER TABLE calls ADD COLUMN bumped_by text;
