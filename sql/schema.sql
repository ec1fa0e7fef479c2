-- whatsapp_channel: tables. Runs first in CREATE EXTENSION (bootstrap).
--
-- Nothing here is granted to PUBLIC: an inbox role is granted what it needs (README,
-- "Roles"); the credentials live in their own table that only the extension owner reads.

CREATE TABLE wa_channels (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    phone_number_id   text NOT NULL UNIQUE,
    -- NULL: use the GUC whatsapp_channel.graph_api_version.
    graph_api_version text,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE wa_channels IS 'One WhatsApp business phone number. Credentials are in wa_channel_secrets.';

CREATE TABLE wa_channel_secrets (
    channel_id   bigint PRIMARY KEY REFERENCES wa_channels (id) ON DELETE CASCADE,
    access_token text NOT NULL,
    app_secret   text NOT NULL,
    verify_token text NOT NULL
);
COMMENT ON TABLE wa_channel_secrets IS 'Channel credentials: readable by the extension owner only. Never grant it.';

CREATE TABLE wa_contacts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    -- WhatsApp id (digits, no '+') and business-scoped user id (BSUID): since 2026 either may be missing.
    wa_id           text,
    user_id         text,
    profile_name    text,
    username        text,
    last_inbound_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (channel_id, wa_id),
    UNIQUE (channel_id, user_id),
    CHECK (wa_id IS NOT NULL OR user_id IS NOT NULL)
);

CREATE TABLE wa_webhook_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id    bigint REFERENCES wa_channels (id) ON DELETE SET NULL,
    received_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- The exact bytes Meta signed, so the event can be re-processed later.
    body          bytea NOT NULL,
    -- 'stored': every item stored; 'partial': some items refused (see error);
    -- 'invalid_payload': signed but not a webhook payload (kept, answered 200: a retry cannot fix it).
    outcome       text NOT NULL CHECK (outcome IN ('stored', 'partial', 'invalid_payload')),
    error         text,
    message_count integer NOT NULL DEFAULT 0,
    status_count  integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE wa_webhook_events IS 'Every verified webhook POST, raw. Unverified requests are never stored.';

CREATE TABLE wa_messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id       bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    contact_id       bigint REFERENCES wa_contacts (id) ON DELETE SET NULL,
    direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    -- Meta's message id. NULL for an outbound message until the Graph API accepts it.
    wamid            text,
    type             text NOT NULL,
    -- Text body, or the caption / reply title of other types.
    body             text,
    -- inbound: 'received'. outbound: queued -> sending -> sent -> delivered -> read (-> played), or failed.
    status           text NOT NULL CHECK (status IN ('received', 'queued', 'sending', 'sent', 'delivered', 'read', 'played', 'failed')),
    -- outbound: '+E.164' phone number the message goes to.
    recipient        text,
    -- inbound: the message object as Meta sent it. outbound: the Graph API request body.
    payload          jsonb NOT NULL,
    webhook_event_id bigint REFERENCES wa_webhook_events (id) ON DELETE SET NULL,
    -- Meta's timestamp: when an inbound message was sent by the customer.
    sent_at          timestamptz,
    delivered_at     timestamptz,
    read_at          timestamptz,
    failed_at        timestamptz,
    -- outbound delivery bookkeeping
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    error_code       integer,
    error_title      text,
    error_details    text,
    error_hint       text,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Redelivered webhooks must not duplicate messages: the constraint, not a cache, decides.
    UNIQUE (channel_id, wamid)
);
CREATE INDEX wa_messages_outbox ON wa_messages (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX wa_messages_sending ON wa_messages (id) WHERE status = 'sending';
CREATE INDEX wa_messages_contact ON wa_messages (contact_id, id);

-- Every status webhook, once per (wamid, status): the history, and a place for statuses that
-- arrive before the send that produced the wamid has been recorded.
CREATE TABLE wa_message_statuses (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id    bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    wamid         text NOT NULL,
    status        text NOT NULL,
    status_at     timestamptz,
    recipient_id  text,
    error_code    integer,
    error_title   text,
    error_details text,
    payload       jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (channel_id, wamid, status)
);
