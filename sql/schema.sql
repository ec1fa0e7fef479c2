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
    -- The WhatsApp Business Account the number belongs to: needed for templates (optional).
    waba_id           text,
    -- A disabled channel refuses new messages; queued ones wait until it is enabled again.
    enabled           boolean NOT NULL DEFAULT true,
    -- Free-form messages to a customer whose 24-hour window is closed are refused at enqueue
    -- (Meta would fail them with 131047); set this to send them anyway.
    allow_outside_window boolean NOT NULL DEFAULT false,
    -- Meta's throughput per business number: 80/s by default, up to 1,000/s once upgraded.
    max_messages_per_second integer NOT NULL DEFAULT 80 CHECK (max_messages_per_second BETWEEN 1 AND 1000),
    -- Set by the delivery worker when Meta refuses the access token: the queue waits instead of
    -- failing every message. wa_set_access_token() clears it.
    paused_at         timestamptz,
    paused_reason     text,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Send marketing templates through Meta's Marketing Messages API
    -- (/{phone_number_id}/marketing_messages) instead of /messages: the same request, with
    -- Meta's delivery optimisation for marketing. Needs the number onboarded to it.
    marketing_messages boolean NOT NULL DEFAULT false,
    -- Set by the delivery worker when the Graph API has answered this channel's sends with
    -- nothing but transport errors and 5xx for whatsapp_channel.outage_after: its queue then
    -- waits, one message probing every whatsapp_channel.outage_probe_every (next_probe_at),
    -- instead of burning attempts; the first answer clears both and the queue resumes in order.
    unreachable_since timestamptz,
    next_probe_at     timestamptz,
    -- How long an authentication template (a one-time code) may wait in the queue: past it, it
    -- fails as expired instead of reaching the customer late (wa_send_template's expires_at).
    authentication_template_ttl interval,
    -- The number as Meta displays it (digits, e.g. 15550783881): tells which channel of a
    -- WhatsApp Business Account a number-level event (quality, display name) is about when the
    -- account has several numbers. NULL: such events apply to every channel of the account.
    display_phone_number text
);
COMMENT ON TABLE wa_channels IS 'One WhatsApp business phone number. Credentials are in wa_channel_secrets.';

CREATE TABLE wa_channel_secrets (
    channel_id   bigint PRIMARY KEY REFERENCES wa_channels (id) ON DELETE CASCADE,
    access_token text NOT NULL,
    app_secret   text NOT NULL,
    verify_token text NOT NULL
);
COMMENT ON TABLE wa_channel_secrets IS 'Channel credentials: readable by the extension owner only. Never grant it.';

-- Channels are the unit of access (README, "Roles"): a role sees a channel's rows when it holds
-- `read` on it, and sends on it when it holds `send`; `admin` (for every channel, present and
-- future: channel_id NULL) sees and does everything, as the extension owner does. The order of
-- the labels is the order of the privileges: each includes the ones before it.
CREATE TYPE wa_channel_privilege AS ENUM ('read', 'send', 'admin');

-- One row per channel and role (a grant of `send` replaces `read`). The role is kept by oid
-- (regrole), so a renamed role keeps its grants; pg_dump writes its name.
CREATE TABLE wa_channel_grants (
    channel_id bigint REFERENCES wa_channels (id) ON DELETE CASCADE,
    grantee    regrole NOT NULL,
    privilege  wa_channel_privilege NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((privilege = 'admin') = (channel_id IS NULL)),
    CONSTRAINT wa_channel_grants_key UNIQUE NULLS NOT DISTINCT (channel_id, grantee)
);
COMMENT ON TABLE wa_channel_grants IS 'Who may read or send on which channel: change it with wa_grant_channel() and wa_revoke_channel().';

CREATE TABLE wa_contacts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    -- WhatsApp id (digits, no '+') and business-scoped user id (BSUID): since 2026 either may be missing.
    wa_id           text,
    user_id         text,
    -- The parent BSUID (of a business portfolio's users), from user_id_update.
    parent_user_id  text,
    profile_name    text,
    username        text,
    last_inbound_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- The name the business saved for this customer in the WhatsApp Business app of a
    -- coexistence number (smb_app_state_sync); NULL once removed there.
    saved_name      text,
    -- When the customer stopped marketing messages from this business (user_preferences
    -- `stop`, a user_preference_changed system message, or Meta's 131050 on a marketing
    -- template); NULL while they accept them. wa_send_template refuses a MARKETING template to
    -- them while it is set (sql/inbound_preferences.sql); only the customer can clear it, by
    -- resuming marketing messages in WhatsApp.
    marketing_opt_out_at    timestamptz,
    -- The time of the latest preference event applied (Meta's timestamp): an older event,
    -- delivered late or again, never overrides a newer one.
    marketing_preference_at timestamptz,
    -- When Meta confirmed that this business blocked the customer (wa_block(), through the
    -- action outbox); NULL once unblocked. wa_send_* refuse a blocked customer at enqueue.
    blocked_at              timestamptz,
    CHECK (wa_id IS NOT NULL OR user_id IS NOT NULL)
);
-- One contact per WhatsApp id, and one per BSUID, of a channel. Partial (a missing id never
-- conflicts anyway), so that a lookup by one id can only be served by its own index: with both
-- over every row, on an empty table (no statistics yet) the planner served the listener's
-- lookup by wa_id with the user_id index read by channel, kept that in its generic plan, and
-- read every contact of the channel for each message until the next ANALYZE: phase A of
-- bench/scale.sh at half speed (docs/benchmarks/2026-12-07-issue-29-fixed-cost.md).
CREATE UNIQUE INDEX wa_contacts_channel_id_wa_id_key ON wa_contacts (channel_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE UNIQUE INDEX wa_contacts_channel_id_user_id_key ON wa_contacts (channel_id, user_id) WHERE user_id IS NOT NULL;
-- A channel's contacts (a role's listing, the cascade of a channel's deletion), which the two
-- partial indexes cannot serve.
CREATE INDEX wa_contacts_channel ON wa_contacts (channel_id, id);

-- BSUIDs a contact had before Meta gave it a new one (user_id_update): a message that still
-- arrives under an old one reaches the same contact.
CREATE TABLE wa_contact_former_ids (
    channel_id  bigint NOT NULL,
    user_id     text NOT NULL,
    contact_id  bigint NOT NULL REFERENCES wa_contacts (id) ON DELETE CASCADE,
    replaced_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX wa_contact_former_ids_contact ON wa_contact_former_ids (contact_id);

-- WhatsApp calls (the Calling API's `calls` webhooks): one row per call, its `connect` and
-- `terminate` events merged, so an inbox can show a missed call next to the messages.
CREATE TABLE wa_calls (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id       bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    -- Meta's id (wacid.…), the same for every event of the call.
    call_id          text NOT NULL,
    contact_id       bigint REFERENCES wa_contacts (id) ON DELETE SET NULL,
    -- inbound: the customer called (USER_INITIATED); outbound: the business did.
    direction        text CHECK (direction IN ('inbound', 'outbound')),
    -- 'ringing' until it ends, then Meta's terminate status in lower case (completed, failed, ...).
    status           text NOT NULL,
    -- A customer's call that ended without being answered.
    missed           boolean NOT NULL DEFAULT false,
    rang_at          timestamptz,
    started_at       timestamptz,
    ended_at         timestamptz,
    duration_seconds integer,
    -- The latest event, as Meta sent it.
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (channel_id, call_id)
);
CREATE INDEX wa_calls_contact ON wa_calls (contact_id, id);

-- Every event of a call as Meta sent it (connect with its SDP offer, terminate, ...), in the
-- order received: wa_calls keeps the call's state, and only its latest event.
CREATE TABLE wa_call_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    call_id     text NOT NULL,
    -- Meta's event: connect, terminate, ...
    event       text NOT NULL,
    -- Meta's timestamp of the event, else when it was received.
    event_at    timestamptz NOT NULL,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX wa_call_events_call ON wa_call_events (channel_id, call_id, id);
-- Meta redelivers: the same event of a call is kept once.
CREATE UNIQUE INDEX wa_call_events_once ON wa_call_events (channel_id, call_id, event, event_at, pg_catalog.md5(payload::text));

-- The groups of the Groups API this number manages, as their webhooks describe them
-- (group_lifecycle_update, group_participants_update, group_settings_update,
-- group_status_update) and as their messages show them. A group's conversation is a row of
-- wa_conversations with group_id set; its messages have wa_messages.group_id.
CREATE TABLE wa_groups (
    channel_id         bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    -- Meta's opaque id (the `to` of a group send).
    group_id           text NOT NULL,
    subject            text,
    description        text,
    invite_link        text,
    -- auto_approve, or approval_required (join requests).
    join_approval_mode text,
    -- active; suspended (by Meta, until group_suspend_cleared); deleted; create_failed (Meta
    -- could not create it: see last_event). Only active groups can be sent to.
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted', 'create_failed')),
    -- Meta's time of the lifecycle or status event that set `status`: an older event that
    -- arrives later (webhooks are not ordered) does not undo it.
    status_at          timestamptz,
    -- WhatsApp ids of the participants (at most 8): who joined and has not left, and who wrote.
    participants       text[] NOT NULL DEFAULT '{}',
    -- A message from any participant opens the 24-hour window for the whole group.
    last_inbound_at    timestamptz,
    -- The latest group webhook about it, as Meta sent it (its errors, if a request failed).
    last_event         jsonb,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Meta's request id of the wa_create_group() that made it (its action's result ->>
    -- 'request_id'), from its group_create webhook: how a creation finds its group.
    create_request_id  text,
    PRIMARY KEY (channel_id, group_id)
);

-- The open requests to join a group that needs approval (join_approval_mode
-- approval_required), as Meta last listed them (wa_list_group_join_requests). Approving or
-- rejecting one (wa_approve_group_join_requests, wa_reject_group_join_requests) removes it once
-- Meta confirms; a listing drops those Meta no longer lists (withdrawn, or decided elsewhere).
CREATE TABLE wa_group_join_requests (
    channel_id      bigint NOT NULL,
    group_id        text NOT NULL,
    -- Meta's id: what approving and rejecting take.
    join_request_id text NOT NULL,
    -- Who asked to join.
    wa_id           text,
    -- Meta's creation_timestamp.
    requested_at    timestamptz,
    listed_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (channel_id, group_id, join_request_id),
    FOREIGN KEY (channel_id, group_id) REFERENCES wa_groups (channel_id, group_id) ON DELETE CASCADE
);

CREATE TABLE wa_webhook_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id    bigint REFERENCES wa_channels (id) ON DELETE SET NULL,
    received_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- The exact bytes Meta signed, so the event can be re-processed later.
    body          bytea NOT NULL,
    -- x-hub-signature-256, content-type, user-agent, x-forwarded-for, as received.
    headers       jsonb NOT NULL DEFAULT '{}',
    -- 'stored': every item stored; 'partial': some items refused for their own content (see
    -- error; answered 200: Meta resending the same bytes cannot fix them);
    -- 'invalid_payload': signed but not a webhook payload (kept, answered 200, likewise);
    -- 'incomplete': some items could not be stored for a database reason (a trigger, a
    -- constraint the extension did not write, a lock, an internal or I/O error; see error): the
    -- POST was answered 500 so that Meta sends it again, the items that were stored stay, and
    -- the event is kept past its retention until a replay stores the rest (the maintenance
    -- worker replays it every minute; wa_replay_webhook_events() does it at once).
    outcome       text NOT NULL CHECK (outcome IN ('stored', 'partial', 'invalid_payload', 'incomplete')),
    error         text,
    message_count integer NOT NULL DEFAULT 0,
    status_count  integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE wa_webhook_events IS 'Every verified webhook POST, raw, for whatsapp_channel.webhook_event_retention. Unverified requests are never stored.';
-- What the maintenance worker deletes first (retention), read in small batches.
CREATE INDEX wa_webhook_events_received ON wa_webhook_events (received_at);
-- The events still to be replayed (usually none), for the maintenance worker and the health view.
CREATE INDEX wa_webhook_events_incomplete ON wa_webhook_events (channel_id, id) WHERE outcome = 'incomplete';

-- The queryable columns of a message derived from its payload by _wa_message_columns()
-- (sql/model.sql), the same way for inbound messages and outbound requests (both carry Meta's
-- "<type>": {...} object), and for events re-processed after an upgrade. Defined once, here:
-- wa_messages takes them with LIKE and _wa_message_columns() returns this type. (Not generated
-- columns: Postgres re-reads those expressions for every INSERT, which cost more than half of
-- an enqueue.)
CREATE TYPE _wa_message_derived AS (
    media_id             text,
    media_mime_type      text,
    media_sha256         text,
    media_filename       text,
    voice                boolean,
    latitude             double precision,
    longitude            double precision,
    location_name        text,
    location_address     text,
    reply_to_wamid       text,
    forwarded            boolean,
    frequently_forwarded boolean,
    referral             jsonb,
    reaction_to_wamid    text,
    reaction_emoji       text,
    interactive_reply_id text,
    button_payload       text,
    order_items          jsonb,
    shared_contacts      jsonb,
    system_type          text,
    original_wamid       text
);

CREATE TABLE wa_messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id       bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    contact_id       bigint REFERENCES wa_contacts (id) ON DELETE SET NULL,
    direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    -- Meta's message id. NULL for an outbound message until the Graph API accepts it.
    wamid            text,
    -- Meta's type: text, image, audio, video, document, sticker, location, contacts, interactive,
    -- button, reaction, order, system, revoke, edit, unsupported, ... (unknown types are kept).
    type             text NOT NULL,
    -- Text body, or the caption / reply title of other types.
    body             text,
    -- inbound: 'received'. outbound: queued -> sending -> sent -> delivered -> read (-> played), or failed;
    -- scheduled (wa_send_*(..., send_at)) -> queued at its time; queued or scheduled -> cancelled
    -- (wa_cancel_message); failed -> queued again (wa_retry_message).
    status           text NOT NULL CHECK (status IN ('received', 'scheduled', 'queued', 'sending', 'sent', 'delivered', 'read', 'played',
                                                     'failed', 'cancelled')),
    -- outbound: '+E.164' phone number the message goes to.
    recipient        text,
    -- inbound: the message object as Meta sent it. outbound: the Graph API request body.
    payload          jsonb NOT NULL,
    -- The raw POST it arrived in, while that is kept (whatsapp_channel.webhook_event_retention).
    -- Not a foreign key: deleting an expired event would then look for its messages, an index
    -- on this column that every message would pay for, and each message stored would look the
    -- event up again.
    webhook_event_id bigint,
    -- Meta's timestamp: when an inbound message was sent by the customer.
    sent_at          timestamptz,
    delivered_at     timestamptz,
    read_at          timestamptz,
    failed_at        timestamptz,
    -- Set on the original message when the customer edits or deletes it.
    edited_at        timestamptz,
    revoked_at       timestamptz,
    -- outbound delivery bookkeeping
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    error_code       integer,
    error_title      text,
    error_details    text,
    error_hint       text,
    -- Who sent an outbound message: 'api' (this extension's wa_send_*) or 'business_app'
    -- (the WhatsApp Business app on a coexistence number, from smb_message_echoes). NULL for
    -- inbound messages.
    source           text CHECK (source IN ('api', 'business_app')),
    -- What Meta last said it charges for this outbound message (statuses[].pricing.category:
    -- marketing, utility, authentication, service); wa_message_costs counts them.
    pricing_category text,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- The group (wa_groups.group_id) a message was written in or sent to; NULL for 1:1. An
    -- inbound group message's contact_id is the participant who wrote it.
    group_id         text,
    -- From the chat history a coexistence number shared when it was onboarded (the `history`
    -- webhook), not live: it moved no unread count and opened no window after the fact.
    from_history     boolean NOT NULL DEFAULT false,
    -- Where an outbound message is posted: NULL for /messages, 'marketing_messages' for the
    -- Marketing Messages API (a marketing template of a channel with marketing_messages on).
    graph_endpoint   text CHECK (graph_endpoint IN ('marketing_messages')),

    -- Queryable columns derived from the payload (see _wa_message_derived above).
    LIKE _wa_message_derived,

    -- The caller's name for an outbound message (wa_send_*(..., idempotency_key => ...)): a
    -- second call with the same channel and key returns this message's id and queues nothing,
    -- so an app that lost its connection during COMMIT can simply call again.
    idempotency_key      text,
    -- Past this, a message still queued is failed as expired instead of being sent late.
    expires_at           timestamptz,
    -- A structured reply's answers (inbound interactive nfm_reply: a Flow's response_json
    -- parsed, an address; call_permission_reply: the reply object), and a Flow's flow_token,
    -- which tells which Flow send was answered (Meta sends no Flow id). body holds a one-line
    -- summary ("Flow reply: date: 2026-12-24, guests: 2").
    flow_response        jsonb,
    flow_token           text,

    -- Redelivered webhooks must not duplicate messages: the constraint, not a cache, decides.
    UNIQUE (channel_id, wamid)
);
-- The outbox. The statuses of a queue change faster than autovacuum analyzes them, so plans are
-- made on statistics that say "no message is queued": these two partial indexes look free to
-- the planner then. Neither has `id` as a key column, so that a lookup by id can never become
-- a scan of a whole queue (it did: `WHERE id = $1 AND status = 'sending'` once used a
-- (channel_id, recipient, id) index, reading all of it for every message sent).
-- The head of each recipient's queue: its messages not done yet (min(id) is the head).
CREATE INDEX wa_messages_outbox ON wa_messages (channel_id, recipient) INCLUDE (id) WHERE status IN ('queued', 'sending');
-- The queue of each channel in the order it falls due, so a claim reads only what it sends.
CREATE INDEX wa_messages_due ON wa_messages (channel_id, next_attempt_at) WHERE status = 'queued';
CREATE INDEX wa_messages_failed ON wa_messages (channel_id, failed_at) WHERE status = 'failed';
-- Scheduled messages in the order they fall due: the delivery worker releases them into the
-- queue at their time (_wa_release_scheduled). Apart from the outbox indexes, so that a message
-- scheduled for tomorrow does not head its customer's queue today.
CREATE INDEX wa_messages_scheduled ON wa_messages (next_attempt_at) WHERE status = 'scheduled';
-- One customer's history, newest first.
CREATE INDEX wa_messages_contact ON wa_messages (contact_id, id);
-- At most one message per channel and idempotency key (partial: most messages have none).
CREATE UNIQUE INDEX wa_messages_idempotency_key ON wa_messages (channel_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- One group's history, newest first (only group messages are in it).
CREATE INDEX wa_messages_group ON wa_messages (channel_id, group_id, id) WHERE group_id IS NOT NULL;
-- Edits and revokes of a message: they may arrive before it (webhooks are not ordered).
CREATE INDEX wa_messages_original ON wa_messages (channel_id, original_wamid) WHERE original_wamid IS NOT NULL;

-- One row per conversation, kept current in the same transaction as every message stored or
-- queued and every wa_mark_read(), so that the inbox's list is an index scan however many
-- customers and messages there are (the view wa_conversations reads it). A conversation is a
-- channel and a contact, or a channel and a group (contact_id NULL, group_id set).
--
-- No foreign keys: the row is derived from a message (whose own keys are checked), and a key
-- check per message cost a tenth of the seed (perf). A deleted channel or contact takes its
-- conversations with it by the triggers in sql/inbound.sql and sql/inbound_calls_groups.sql,
-- as ON DELETE CASCADE would.
CREATE TABLE wa_conversation_state (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL,
    contact_id      bigint,
    last_message_id bigint NOT NULL,
    last_message_at timestamptz NOT NULL,
    last_direction  text NOT NULL,
    last_type       text NOT NULL,
    -- The first 200 characters of the last message's body (the list's preview line).
    last_preview    text,
    -- Inbound messages since the business last wrote or marked the conversation read.
    unread_count    integer NOT NULL DEFAULT 0,
    group_id        text,
    UNIQUE (channel_id, contact_id),
    CONSTRAINT wa_conversation_state_one_party CHECK ((contact_id IS NULL) <> (group_id IS NULL))
);
COMMENT ON TABLE wa_conversation_state IS 'Maintained state behind the view wa_conversations: read the view.';
-- A group's conversation. Partial: every message rewrites its conversation's index entries
-- (last_message_at is a key of the list), and a full unique index would take an entry for
-- each 1:1 row too, with a NULL group (wa_send_text on 1.27 million messages: 10% faster without).
CREATE UNIQUE INDEX wa_conversation_state_group ON wa_conversation_state (channel_id, group_id) WHERE group_id IS NOT NULL;
-- The inbox's list, newest first, and the same for conversations with unread messages.
CREATE INDEX wa_conversation_state_list ON wa_conversation_state (channel_id, last_message_at DESC NULLS LAST);
CREATE INDEX wa_conversation_state_unread ON wa_conversation_state (channel_id, last_message_at DESC NULLS LAST) WHERE unread_count > 0;
-- Every conversation a role sees, newest first (the inbox's "all conversations": no channel
-- filter; row-level security keeps the role to its channels). Without it that read sorted every
-- conversation: 0.5-1 s on a million. The row's update is not HOT anyway (last_message_at is a
-- key of the list), and its new entry lands at the index's newest end: no measurable cost to
-- the listener or the enqueue (docs/benchmarks/2026-12-07-issue-29-saturated.md, section 5).
CREATE INDEX wa_conversation_state_recent ON wa_conversation_state (last_message_at DESC NULLS LAST);

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
    -- statuses[].pricing: what Meta charges (on sent and one of delivered/read); see
    -- wa_message_costs.
    pricing_model    text,
    pricing_type     text,
    pricing_category text,
    billable         boolean,
    payload       jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- For a message sent to a group: the participant this status is about (Meta sends a
    -- delivered and a read status per participant). NULL for 1:1 messages.
    participant_id text,
    CONSTRAINT wa_message_statuses_key UNIQUE NULLS NOT DISTINCT (channel_id, wamid, status, participant_id)
);

-- What the webhook listener saw, per channel and kind: the only thing ever written for a
-- request that failed verification. Kinds: stored, partial, invalid_payload, unrouted,
-- signature_mismatch, verify_token_mismatch, verified.
CREATE TABLE wa_channel_counters (
    channel_id  bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    count       bigint NOT NULL DEFAULT 0,
    last_at     timestamptz NOT NULL,
    -- For rejections, the likely cause in the seed's words; for unrouted, the phone_number_id.
    last_detail text,
    PRIMARY KEY (channel_id, kind)
);

-- The message templates of a channel's WhatsApp Business Account, as wa_sync_templates() read
-- them and template status webhooks changed them since.
CREATE TABLE wa_templates (
    channel_id  bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    name        text NOT NULL,
    language    text NOT NULL,
    status      text NOT NULL,
    category    text,
    components  jsonb NOT NULL DEFAULT '[]',
    template_id text,
    -- Why Meta rejected, paused or disabled it (from the status webhook).
    reason      text,
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- From Meta's template webhooks (sql/inbound_business.sql), each with the time of the event
    -- that set it, so that an older event delivered late never overrides a newer one:
    -- GREEN, YELLOW, RED or UNKNOWN (message_template_quality_update);
    quality_score       text,
    quality_at          timestamptz,
    -- the status's (message_template_status_update: APPROVED, PAUSED, DISABLED, ...);
    status_at           timestamptz,
    -- the category before a recategorisation, and when the new one takes (or took) effect
    -- (template_category_update): wa_send_template refuses the template once it has, until
    -- wa_sync_templates() reads it again and so acknowledges the new category (and its price);
    previous_category   text,
    category_changes_at timestamptz,
    category_at         timestamptz,
    -- Meta changed its components (message_template_components_update): the copy above is
    -- stale until wa_sync_templates() reads it again.
    needs_sync_since    timestamptz,
    PRIMARY KEY (channel_id, name, language)
);

-- What Meta said about a channel's business (its account, its number, its templates), a
-- webhook-level error, or a webhook field this version does not understand: one row per event
-- and channel, with what the extension did about it.
CREATE TYPE wa_channel_event_kind AS ENUM (
    'account_update', 'account_alert', 'account_review', 'phone_number_quality', 'phone_number_name',
    'business_capability', 'template_status', 'template_quality', 'template_category', 'template_components',
    'webhook_error', 'unknown_field');

CREATE TABLE wa_channel_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id       bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    kind             wa_channel_event_kind NOT NULL,
    -- Meta's webhook field (changes[].field).
    field            text NOT NULL,
    -- When Meta says it happened (entry[].time), else when it was received.
    event_at         timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Meta's words, on one line.
    summary          text NOT NULL,
    -- What the event says about the channel (quality_rating, messaging_limit, throughput,
    -- account_status, account_event, display_name_status, send_rate_cap, stops_sending): only
    -- the keys Meta stated. wa_channel_health reads the latest of each.
    facts            jsonb NOT NULL DEFAULT '{}',
    -- The changes[].value (or the one error) as Meta sent it.
    payload          jsonb NOT NULL,
    -- What the extension did: the send rate lowered, the queue paused, a template updated...
    -- (NULL: recorded only).
    action           text,
    -- The raw POST it came in (kept for whatsapp_channel.webhook_retention).
    webhook_event_id bigint
);
CREATE INDEX wa_channel_events_latest ON wa_channel_events (channel_id, kind, event_at DESC, id DESC);
-- Meta redelivers, and a replay stores a POST again: the same event (kind, Meta's time and
-- payload) is recorded, and acted on, once per channel.
CREATE UNIQUE INDEX wa_channel_events_once ON wa_channel_events (channel_id, kind, event_at, pg_catalog.md5(payload::text));

-- One download job per inbound media message (image, audio, voice, video, document, sticker),
-- apart from the message row: the message is stored at once; the bytes follow.
CREATE TABLE wa_media (
    message_id      bigint PRIMARY KEY REFERENCES wa_messages (id) ON DELETE CASCADE,
    channel_id      bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    media_id        text NOT NULL,
    -- pending -> downloading -> done; or failed (with error); or skipped (too large, or only
    -- metadata is kept: whatsapp_channel.media_download).
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'downloading', 'done', 'failed', 'skipped')),
    mime_type       text,
    -- From the webhook (base64 or hex), checked against the bytes.
    expected_sha256 text,
    sha256          text,
    size            bigint,
    -- The bytes; NULL once whatsapp_channel.media_retention has passed (see purged_at).
    content         bytea,
    purged_at       timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    error           text,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX wa_media_due ON wa_media (next_attempt_at) WHERE status = 'pending';
-- Downloaded bytes in the order they expire (whatsapp_channel.media_retention).
CREATE INDEX wa_media_kept ON wa_media (updated_at) WHERE content IS NOT NULL;

-- The action outbox: Graph API calls that are not messages (block and unblock users, act on a
-- call, create and delete templates, manage groups), queued in the caller's transaction by the
-- SQL API (sql/outbound_actions.sql) and performed by the delivery worker after COMMIT, retried
-- as messages are. The kinds are the Graph API endpoints; a new endpoint is a new label.
CREATE TYPE wa_action_kind AS ENUM ('block', 'unblock', 'call', 'create_template', 'delete_template',
                                    'create_group', 'get_group_invite_link', 'reset_group_invite_link',
                                    'list_group_join_requests', 'approve_group_join_requests',
                                    'reject_group_join_requests', 'remove_group_participants');
-- What wa_call_action() can do to a call (Meta's `action`).
CREATE TYPE wa_call_action AS ENUM ('pre_accept', 'accept', 'reject', 'terminate');

CREATE TABLE wa_actions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    kind            wa_action_kind NOT NULL,
    -- What it acts on, to find it by: the call id, the template's name, the group id (the
    -- subject for a group's creation); NULL for a block (its users are in the request).
    target          text,
    -- The Graph API body (NULL for a template's deletion, which names it in the URL).
    request         jsonb,
    -- queued -> sending -> done, or failed (with the error); done with error_code set when Meta
    -- did some of it (a block some of whose users failed: see result).
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz DEFAULT pg_catalog.now(),
    -- Meta's answer (a block's added_users / removed_users and failed_users with their errors).
    result          jsonb,
    error_code      integer,
    error_title     text,
    error_details   text,
    error_hint      text,
    -- The role that queued it (the session's, not the functions' owner).
    created_by      name NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    done_at         timestamptz
);
-- The due actions, for the delivery worker's claim (few: actions are rare next to messages).
CREATE INDEX wa_actions_due ON wa_actions (next_attempt_at) WHERE status = 'queued';
CREATE INDEX wa_actions_channel ON wa_actions (channel_id, id);
-- What is not done yet per channel and target: an action waits for the older ones of its target.
CREATE INDEX wa_actions_pending ON wa_actions (channel_id, (COALESCE(target, ''))) WHERE status IN ('queued', 'sending');

-- Backups. pg_dump leaves an extension's tables out of a dump (CREATE EXTENSION makes them
-- again, empty) unless the extension registers them as holding the user's data. Every table
-- above does, so a dump restores the product: channels and their credentials, contacts,
-- conversations, messages, the outbox (what was queued goes out after the restore), statuses
-- and the raw webhook log. The identity sequences go with them, so that new rows of a restored
-- database do not take ids that its restored rows already have. (tests/e2e/tests/backup.rs
-- checks that no table is missed.)
DO $$
DECLARE
    t text;
    seq text;
BEGIN
    FOREACH t IN ARRAY ARRAY['wa_channels', 'wa_channel_secrets', 'wa_channel_grants', 'wa_contacts', 'wa_contact_former_ids', 'wa_calls',
                             'wa_groups', 'wa_webhook_events', 'wa_messages', 'wa_conversation_state',
                             'wa_message_statuses', 'wa_channel_counters', 'wa_templates', 'wa_media', 'wa_channel_events',
                             'wa_call_events', 'wa_actions', 'wa_group_join_requests'] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(t::regclass, '');
        seq := (SELECT pg_catalog.pg_get_serial_sequence(t, a.attname) FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = t::regclass AND a.attidentity <> '');
        IF seq IS NOT NULL THEN
            PERFORM pg_catalog.pg_extension_config_dump(seq::regclass, '');
        END IF;
    END LOOP;
END
$$;
