-- Identify and Differentiate: customers, their identifiers, their value.

CREATE TABLE customers (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_number  text UNIQUE,
    name             text NOT NULL DEFAULT '',
    email            text,
    lifetime_value   numeric(14, 2) NOT NULL DEFAULT 0 CHECK (lifetime_value >= 0),
    annual_margin    numeric(14, 2) NOT NULL DEFAULT 0,
    cost_to_serve    numeric(14, 2) NOT NULL DEFAULT 0 CHECK (cost_to_serve >= 0),
    -- The tier derived from the figures by the configured thresholds.
    computed_tier    text NOT NULL,
    -- A supervisor's pin wins over the computed tier until it is removed.
    pinned_tier      text,
    pin_reason       text,
    pinned_by        text,
    pinned_at        timestamptz,
    -- The needs profile: learning-question answers keyed by question key.
    needs            jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- A provisional customer stands for an unknown caller until merged into a real one.
    provisional      boolean NOT NULL DEFAULT false,
    merged_into      bigint REFERENCES customers (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (pinned_tier IS NULL OR (pin_reason IS NOT NULL AND pinned_by IS NOT NULL))
);

CREATE INDEX customers_merged_into ON customers (merged_into) WHERE merged_into IS NOT NULL;

-- One row per (phone, customer). A phone may belong to several customers
-- (a household, a switchboard); resolve answers "multiple" then.
CREATE TABLE customer_phones (
    phone_e164   text NOT NULL,
    customer_id  bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    -- crm: from the CRM or the API; linked: typed customer number from this phone;
    -- provisional: the number of an unknown caller.
    source       text NOT NULL CHECK (source IN ('crm', 'linked', 'provisional')),
    linked_at    timestamptz NOT NULL DEFAULT now(),
    linked_via   text,
    PRIMARY KEY (phone_e164, customer_id)
);

CREATE INDEX customer_phones_customer ON customer_phones (customer_id);

-- A typed customer number that disagreed with the phone's owner. Kept for a
-- person to look at; nothing is re-linked silently.
CREATE TABLE identity_conflicts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone_e164          text NOT NULL,
    phone_customer_ids  bigint[] NOT NULL,
    typed_customer_id   bigint NOT NULL REFERENCES customers (id),
    customer_number     text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- Every contact with a customer. The queue issue adds the call lifecycle;
-- this table is the history an agent reads.
CREATE TABLE interactions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (id),
    channel      text NOT NULL DEFAULT 'phone',
    started_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz,
    agent        text,
    outcome      text,
    notes        text,
    identified_by text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX interactions_customer_started ON interactions (customer_id, started_at DESC, id DESC);
