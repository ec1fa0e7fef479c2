-- whatsapp_channel: the SQL half of the API and the store procedures the workers call.
-- Runs last in CREATE EXTENSION (finalize), after the Rust functions exist.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- Ordering of outbound statuses: a status is applied only if it moves the message forward;
-- 'failed' is terminal.
-- (No SET search_path: it names no object, and without it Postgres can inline it.)
CREATE FUNCTION _wa_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE status
    WHEN 'queued' THEN 0 WHEN 'sending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
    WHEN 'read' THEN 3 WHEN 'played' THEN 4 WHEN 'failed' THEN 100 ELSE -1 END;

-- The queryable columns of a message, derived from its type and Meta's JSON (an inbound message
-- object, or an outbound request: both carry the "<type>": {...} object). No cast here may
-- fail: a payload of an unexpected shape must still be stored. Used by every INSERT into
-- wa_messages, in the order of the columns (see sql/schema.sql).
CREATE FUNCTION _wa_message_columns(msg_type text, payload jsonb)
RETURNS TABLE (
    media_id text,
    media_mime_type text,
    media_sha256 text,
    media_filename text,
    voice boolean,
    latitude double precision,
    longitude double precision,
    location_name text,
    location_address text,
    reply_to_wamid text,
    forwarded boolean,
    frequently_forwarded boolean,
    referral jsonb,
    reaction_to_wamid text,
    reaction_emoji text,
    interactive_reply_id text,
    button_payload text,
    order_items jsonb,
    shared_contacts jsonb,
    system_type text,
    original_wamid text
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT
        CASE WHEN msg_type IN ('image', 'audio', 'video', 'document', 'sticker') THEN payload -> msg_type ->> 'id' END,
        CASE WHEN msg_type IN ('image', 'audio', 'video', 'document', 'sticker') THEN payload -> msg_type ->> 'mime_type' END,
        CASE WHEN msg_type IN ('image', 'audio', 'video', 'document', 'sticker') THEN payload -> msg_type ->> 'sha256' END,
        payload -> 'document' ->> 'filename',
        payload @> '{"audio": {"voice": true}}',
        CASE WHEN jsonb_typeof(payload -> 'location' -> 'latitude') = 'number' THEN (payload -> 'location' ->> 'latitude')::double precision END,
        CASE WHEN jsonb_typeof(payload -> 'location' -> 'longitude') = 'number' THEN (payload -> 'location' ->> 'longitude')::double precision END,
        payload -> 'location' ->> 'name',
        payload -> 'location' ->> 'address',
        COALESCE(payload -> 'context' ->> 'id', payload -> 'context' ->> 'message_id'),
        payload @> '{"context": {"forwarded": true}}' OR payload @> '{"context": {"frequently_forwarded": true}}',
        payload @> '{"context": {"frequently_forwarded": true}}',
        payload -> 'referral',
        payload -> 'reaction' ->> 'message_id',
        NULLIF(payload -> 'reaction' ->> 'emoji', ''),
        COALESCE(payload -> 'interactive' -> 'button_reply' ->> 'id', payload -> 'interactive' -> 'list_reply' ->> 'id'),
        payload -> 'button' ->> 'payload',
        payload -> 'order' -> 'product_items',
        CASE WHEN msg_type = 'contacts' THEN payload -> 'contacts' END,
        payload -> 'system' ->> 'type',
        COALESCE(payload -> 'revoke' ->> 'original_message_id', payload -> 'edit' ->> 'original_message_id');
END;

-- The advisory lock key of one outbound message's wamid (see _wa_receive_status).
CREATE FUNCTION _wa_wamid_lock(channel bigint, wamid text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.hashtextextended(channel::text || '/' || wamid, 0);

-- ---------------------------------------------------------------------------------------------
-- API

CREATE FUNCTION wa_webhook_url(channel text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := nullif(pg_catalog.current_setting('whatsapp_channel.public_url', true), '');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.wa_channels c WHERE c.name = channel) THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF base IS NULL THEN
        base := 'http://' || coalesce(pg_catalog.current_setting('whatsapp_channel.listen_address', true), '127.0.0.1:8080');
        RAISE NOTICE 'whatsapp_channel.public_url is not set: this URL is only reachable from this machine'
            USING HINT = 'Meta needs a public https URL: put a TLS proxy or tunnel in front of whatsapp_channel.listen_address and set whatsapp_channel.public_url to its address.';
    END IF;
    RETURN pg_catalog.rtrim(base, '/') || '/webhook/' || channel;
END
$$;

-- The channel a message may be queued on, and the customer it goes to: no row when the channel
-- is unknown or disabled, or when the customer's 24-hour window is closed to this type of
-- message (Meta accepts free-form messages only within 24 hours of the customer's last
-- message; outside it they fail later with 131047: refused here, where the caller can act).
-- The planner inlines it into _wa_enqueue's INSERTs.
CREATE FUNCTION _wa_enqueue_target(channel text, recipient text, p_type text)
RETURNS TABLE (channel_id bigint, contact_id bigint)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.id, k.id
      FROM @extschema@.wa_channels c
      LEFT JOIN LATERAL (SELECT k.id, k.last_inbound_at FROM @extschema@.wa_contacts k
                          WHERE k.channel_id = c.id
                            AND (k.wa_id = pg_catalog.ltrim(_wa_enqueue_target.recipient, '+')
                                 OR k.user_id = _wa_enqueue_target.recipient)
                          -- (two contacts match when a customer's phone and BSUID were seen apart)
                          ORDER BY k.last_inbound_at DESC NULLS LAST
                          LIMIT 1) k ON true
     WHERE c.name = _wa_enqueue_target.channel AND c.enabled
       AND (_wa_enqueue_target.p_type IN ('template', 'mark_read') OR c.allow_outside_window
            OR k.last_inbound_at >= pg_catalog.now() - interval '24 hours');
END;

-- Queues one outbound message after the checks every kind shares, in the caller's
-- transaction, and wakes the delivery worker at commit. `recipient` is already normalised
-- ('+E.164' or a BSUID); `request` is the Graph API body.
CREATE FUNCTION _wa_enqueue(channel text, recipient text, p_type text, p_body text, request jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    msg_id  bigint;
    sends   boolean;
    ch      @extschema@.wa_channels;
    contact @extschema@.wa_contacts;
BEGIN
    -- One statement on the way in (the channel, the customer's 24-hour window and the row);
    -- only when it inserts nothing are the rules checked one by one, to say which one refused.
    IF p_type = 'text' THEN
        -- Text, most of what an inbox sends, has one derived column (the message it replies
        -- to): the other twenty of _wa_message_columns() are NULL for it, and computing them
        -- cost a tenth of an enqueue (measured).
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, direction, type, body, status, recipient, payload,
                                              next_attempt_at, reply_to_wamid, voice, forwarded, frequently_forwarded)
        SELECT t.channel_id, t.contact_id, 'outbound', p_type, p_body, 'queued', recipient, request, pg_catalog.now(),
               request -> 'context' ->> 'message_id', false, false, false
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type) t
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    ELSE
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, direction, type, body, status, recipient, payload, next_attempt_at,
                                              media_id, media_mime_type, media_sha256, media_filename,
                                              voice, latitude, longitude, location_name, location_address,
                                              reply_to_wamid, forwarded, frequently_forwarded, referral,
                                              reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                              button_payload, order_items, shared_contacts, system_type,
                                              original_wamid)
        SELECT t.channel_id, t.contact_id, 'outbound', p_type, p_body, 'queued', recipient, request, pg_catalog.now(), d.*
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type) t
         CROSS JOIN LATERAL @extschema@._wa_message_columns(p_type, request) d
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    END IF;
    IF msg_id IS NOT NULL THEN
        -- A paused channel's queue waits for wa_set_access_token() (or any change to the
        -- channel, see wa_channels_wake): no need to wake the worker for it.
        IF sends THEN
            PERFORM @extschema@._wa_wake_delivery();
        END IF;
        RETURN msg_id;
    END IF;

    SELECT * INTO ch FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF NOT ch.enabled THEN
        RAISE EXCEPTION 'channel % is disabled', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Enable it with UPDATE wa_channels SET enabled = true WHERE name = %L.', channel);
    END IF;
    SELECT * INTO contact FROM @extschema@.wa_contacts k
     WHERE k.channel_id = ch.id AND (k.wa_id = pg_catalog.ltrim(recipient, '+') OR k.user_id = recipient)
     ORDER BY k.last_inbound_at DESC NULLS LAST
     LIMIT 1;
    IF p_type IN ('template', 'mark_read') OR ch.allow_outside_window
       OR contact.last_inbound_at >= pg_catalog.now() - interval '24 hours' THEN
        -- The channel was enabled, the switch turned on or the customer wrote since the INSERT
        -- looked (a concurrent transaction): nothing refuses the message now, so the caller
        -- only needs to try again.
        RAISE EXCEPTION 'channel % changed while the message was being queued', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'serialization_failure', HINT = 'Try again.';
    END IF;
    RAISE EXCEPTION 'the 24-hour customer-service window with % is closed: %', recipient,
        CASE WHEN contact.last_inbound_at IS NULL THEN 'they have not written to channel ' || pg_catalog.quote_literal(channel)
             ELSE 'their last message was at ' || contact.last_inbound_at::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Only an approved template can (re)open the conversation: use wa_send_template(). '
                  || 'To send anyway, UPDATE wa_channels SET allow_outside_window = true.';
END
$$;

-- The send functions are PL/pgSQL rather than SQL: Postgres 15 plans the body of a SQL function
-- that cannot be inlined on every call (a third of the cost of an enqueue, measured), while
-- PL/pgSQL keeps its plans for the session.
CREATE FUNCTION wa_send_text(channel text, recipient text, body text, reply_to text DEFAULT NULL, preview_url boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'text', body, @extschema@._wa_text_request(to_, body, reply_to, preview_url));
END
$$;

CREATE FUNCTION wa_send_media(channel text, recipient text, kind text, link_or_media_id text,
                              caption text DEFAULT NULL, filename text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, kind, caption,
                                   @extschema@._wa_media_request(to_, kind, link_or_media_id, caption, filename));
END
$$;

-- Refuses a template that the channel's synced templates (wa_sync_templates) show cannot be
-- sent: unknown, not approved, or given the wrong number of body parameters. A channel whose
-- templates were never synced is not checked.
CREATE FUNCTION _wa_check_template(channel text, p_name text, p_language text, components jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch_id    bigint;
    t        @extschema@.wa_templates;
    expected integer;
    given    integer;
BEGIN
    SELECT c.id INTO ch_id FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF ch_id IS NULL OR NOT EXISTS (SELECT 1 FROM @extschema@.wa_templates x WHERE x.channel_id = ch_id) THEN
        RETURN; -- unknown channels are refused by _wa_enqueue; unsynced ones are not checked
    END IF;
    SELECT * INTO t FROM @extschema@.wa_templates x WHERE x.channel_id = ch_id AND x.name = p_name AND x.language = p_language;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'template % (%) is not a template of channel %', pg_catalog.quote_literal(p_name), p_language, pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object',
                  HINT = 'Its templates: ' || (SELECT pg_catalog.string_agg(x.name || ' (' || x.language || ', ' || x.status || ')', ', ' ORDER BY x.name, x.language)
                                                 FROM @extschema@.wa_templates x WHERE x.channel_id = ch_id)
                      || '. Run wa_sync_templates(' || pg_catalog.quote_literal(channel) || ') if it was created since.';
    END IF;
    IF t.status <> 'APPROVED' THEN
        RAISE EXCEPTION 'template % (%) is %, not APPROVED', pg_catalog.quote_literal(p_name), p_language, t.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = COALESCE('Meta''s reason: ' || t.reason || '. ', '') || 'Only approved templates can be sent; see WhatsApp Manager -> Message templates.';
    END IF;
    expected := @extschema@._wa_template_body_parameters(t.components);
    given := @extschema@._wa_given_body_parameters(components);
    IF expected <> given THEN
        RAISE EXCEPTION 'template % (%) expects % body parameter(s), got %', pg_catalog.quote_literal(p_name), p_language, expected, given
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Its body: ' || COALESCE((SELECT c ->> 'text' FROM pg_catalog.jsonb_array_elements(t.components) c
                                                    WHERE pg_catalog.upper(c ->> 'type') = 'BODY' LIMIT 1), '(none)')
                      || '. Pass components => ''[{"type":"body","parameters":[{"type":"text","text":"..."}, ...]}]''.';
    END IF;
END
$$;

CREATE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    RETURN @extschema@._wa_enqueue(channel, to_, 'template', name, @extschema@._wa_template_request(to_, name, language, components));
END
$$;

-- Applies a template status webhook (message_template_status_update) to the templates of the
-- channels of that business account which share the posting channel's app.
CREATE FUNCTION _wa_apply_template_status(posting_channel bigint, business_account text, p_name text, p_language text,
                                          p_status text, p_template_id text, p_reason text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @extschema@.wa_templates AS t (channel_id, name, language, status, template_id, reason)
    SELECT c.id, p_name, p_language, p_status, p_template_id, p_reason
      FROM @extschema@.wa_channels c
      JOIN @extschema@.wa_channel_secrets s ON s.channel_id = c.id
     WHERE c.waba_id = business_account
       AND s.app_secret = (SELECT p.app_secret FROM @extschema@.wa_channel_secrets p WHERE p.channel_id = posting_channel)
    ON CONFLICT (channel_id, name, language) DO UPDATE
       SET status = excluded.status, template_id = COALESCE(excluded.template_id, t.template_id),
           reason = excluded.reason, updated_at = pg_catalog.now();
END
$$;

CREATE FUNCTION wa_send_interactive(channel text, recipient text, interactive jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', interactive #>> '{body,text}',
                                   @extschema@._wa_interactive_request(to_, interactive));
END
$$;

CREATE FUNCTION wa_send_location(channel text, recipient text, latitude double precision, longitude double precision,
                                 name text DEFAULT NULL, address text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'location', name,
                                   @extschema@._wa_location_request(to_, latitude, longitude, name, address));
END
$$;

-- The customer a message of this channel was exchanged with (who receives a reaction or a
-- read receipt about it), as '+E.164' or BSUID.
CREATE FUNCTION _wa_counterpart(channel text, message_wamid text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who text;
BEGIN
    SELECT CASE WHEN m.direction = 'outbound' THEN m.recipient
                ELSE COALESCE('+' || k.wa_id, k.user_id) END
      INTO who
      FROM @extschema@.wa_messages m
      JOIN @extschema@.wa_channels c ON c.id = m.channel_id
      LEFT JOIN @extschema@.wa_contacts k ON k.id = m.contact_id
     WHERE c.name = channel AND m.wamid = message_wamid;
    IF who IS NULL THEN
        RAISE EXCEPTION 'no message % in channel %', message_wamid, pg_catalog.quote_literal(channel)
            USING ERRCODE = 'no_data_found', HINT = 'Pass the wamid of a message of this channel (wa_messages.wamid).';
    END IF;
    RETURN who;
END
$$;

-- Reacts to a message with an emoji; an empty emoji removes the reaction.
CREATE FUNCTION wa_send_reaction(channel text, message_wamid text, emoji text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@._wa_counterpart(channel, message_wamid);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'reaction', emoji, @extschema@._wa_reaction_request(to_, message_wamid, emoji));
END
$$;

-- Marks a received message (and those before it) as read, with a typing indicator if asked.
CREATE FUNCTION wa_mark_read(channel text, message_wamid text, typing boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@._wa_counterpart(channel, message_wamid);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'mark_read', NULL, @extschema@._wa_mark_read_request(message_wamid, typing));
END
$$;

-- Replaces a channel's access token (an expired temporary token, a rotated system-user token)
-- and resumes a queue that a token error paused.
CREATE FUNCTION wa_set_access_token(channel text, access_token text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch_id bigint;
BEGIN
    PERFORM @extschema@._wa_check_access_token(access_token);
    SELECT c.id INTO ch_id FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF ch_id IS NULL THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    UPDATE @extschema@.wa_channel_secrets s SET access_token = wa_set_access_token.access_token WHERE s.channel_id = ch_id;
    -- (wa_channels_wake wakes the delivery worker for the resumed queue.)
    UPDATE @extschema@.wa_channels c SET paused_at = NULL, paused_reason = NULL WHERE c.id = ch_id;
END
$$;

-- Any change to a channel (resumed, enabled, a new rate limit) wakes the delivery worker at
-- commit, so that its queue is looked at again at once.
CREATE FUNCTION _wa_channel_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._wa_wake_delivery();
    RETURN NULL;
END
$$;

CREATE TRIGGER wa_channels_wake AFTER INSERT OR UPDATE ON wa_channels
    FOR EACH STATEMENT EXECUTE FUNCTION _wa_channel_changed();

-- A message queued for a customer moves their conversation forward (it is the last message,
-- and nothing is unread once the business writes); a read receipt only clears the unread
-- count. At COMMIT, as a deferred trigger, so that the conversation's row is locked only for
-- the commit itself: an inbox transaction that stays open after wa_send_text() must not hold
-- up the webhook listener, which updates the same row for every message the customer sends.
CREATE FUNCTION _wa_outbound_conversation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.type = 'mark_read' THEN
        UPDATE @extschema@.wa_conversation_state s SET unread_count = 0
         WHERE s.channel_id = NEW.channel_id AND s.contact_id = NEW.contact_id AND s.unread_count <> 0;
    ELSE
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, contact_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        VALUES (NEW.channel_id, NEW.contact_id, NEW.id, NEW.created_at, 'outbound', NEW.type, pg_catalog.left(NEW.body, 200), 0)
        ON CONFLICT (channel_id, contact_id) DO UPDATE
           SET unread_count = 0,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END;
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER wa_messages_outbound_conversation AFTER INSERT ON wa_messages
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.direction = 'outbound' AND NEW.contact_id IS NOT NULL)
    EXECUTE FUNCTION _wa_outbound_conversation();

-- ---------------------------------------------------------------------------------------------
-- Store procedures for the webhook listener
--
-- One write path per kind of data: _wa_receive_messages() stores messages of every kind and
-- _wa_receive_statuses() stores statuses, each for a whole batch of webhooks in a few
-- set-based statements. When a batch fails, the listener calls the same functions again with
-- one item each, in a subtransaction per item. Every lookup is by a unique or primary key
-- (as a scalar subquery or an aggregated LATERAL, which the planner cannot turn into a scan of
-- a large table), so storing a message costs the same on a year of traffic as on an empty
-- database. The result does not depend on how items were grouped: statuses are applied by
-- rank whatever order they arrive in, and an edit or revoke that arrives before its message
-- is applied when the message comes.

-- The contact of a sender: by WhatsApp id first, else by BSUID.
CREATE FUNCTION _wa_contact_of(channel bigint, p_wa_id text, p_user_id text) RETURNS bigint
LANGUAGE sql STABLE
RETURN COALESCE((SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = channel AND k.wa_id = p_wa_id),
                (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = channel AND k.user_id = p_user_id));

-- Meta's unix timestamp as a timestamptz; NULL for one no timestamptz can hold (the raw
-- payload keeps it): a signed message is never refused for its timestamp.
CREATE FUNCTION _wa_unix_time(ts double precision) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN ts >= 0 AND ts < 253402300800 THEN pg_catalog.to_timestamp(ts) END;

-- Stores inbound messages of every kind, one row per element of the arrays (in order).
-- Contacts are found or created (by WhatsApp id, else by BSUID) and kept current; each new
-- message gets its derived columns, a media download job if it has media, its conversation
-- moved forward and a wa_message notification. A redelivered wamid adds nothing. An identity
-- change (a system message) is applied after the other rows of the call: the listener ends a
-- call after each one, so that later messages see it. Returns how many messages were new.
CREATE FUNCTION _wa_receive_messages(
    channels bigint[], events bigint[], wamids text[], froms text[], from_user_ids text[], names text[], usernames text[],
    types text[], bodies text[], sent_ats double precision[], payloads jsonb[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Each statement below joins a batch (tens to thousands of rows) to tables of millions: only
-- nested loops over their unique indexes keep that independent of the tables' size, whatever
-- the statistics of the session-local staging table say. (No JIT: nothing here runs long.)
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
AS $$
DECLARE
    added      integer;
    media_jobs integer;
    changed    bigint[];
BEGIN
    -- A session-local staging table, so the batch is unnested once and read several times.
    IF pg_catalog.to_regclass('pg_temp._wa_incoming') IS NULL THEN
        CREATE TEMP TABLE _wa_incoming (
            ord bigint, channel_id bigint, event_id bigint, wamid text, wa_id text, user_id text, name text, username text,
            type text, body text, sent_at timestamptz, payload jsonb, contact_id bigint) ON COMMIT DELETE ROWS;
    END IF;
    DELETE FROM pg_temp._wa_incoming;
    INSERT INTO pg_temp._wa_incoming
    SELECT u.ord, u.ch, u.ev, u.wamid, u.wa, u.uid, u.nm, u.un, u.ty, u.bd, @extschema@._wa_unix_time(u.ts), u.pl,
           @extschema@._wa_contact_of(u.ch, u.wa, u.uid)
      FROM unnest(channels, events, wamids, froms, from_user_ids, names, usernames, types, bodies, sent_ats, payloads)
           WITH ORDINALITY AS u(ch, ev, wamid, wa, uid, nm, un, ty, bd, ts, pl, ord);

    -- Senders seen for the first time, in the order they wrote: a later row that shares an id
    -- with an earlier one conflicts (ON CONFLICT DO NOTHING, on either unique key) and joins
    -- that contact below, exactly as if the rows had been stored one by one.
    IF EXISTS (SELECT 1 FROM pg_temp._wa_incoming i WHERE i.contact_id IS NULL AND (i.wa_id IS NOT NULL OR i.user_id IS NOT NULL)) THEN
        INSERT INTO @extschema@.wa_contacts (channel_id, wa_id, user_id, profile_name, username, last_inbound_at)
        SELECT i.channel_id, i.wa_id, i.user_id,
               (pg_catalog.array_agg(i.name ORDER BY i.ord DESC) FILTER (WHERE i.name IS NOT NULL))[1],
               (pg_catalog.array_agg(i.username ORDER BY i.ord DESC) FILTER (WHERE i.username IS NOT NULL))[1],
               -- A system notice is not the customer writing: it does not open the 24-hour window.
               pg_catalog.max(COALESCE(i.sent_at, pg_catalog.now())) FILTER (WHERE i.type <> 'system')
          FROM pg_temp._wa_incoming i
         WHERE i.contact_id IS NULL AND (i.wa_id IS NOT NULL OR i.user_id IS NOT NULL)
         GROUP BY i.channel_id, i.wa_id, i.user_id
         ORDER BY pg_catalog.min(i.ord)
        ON CONFLICT DO NOTHING;
        UPDATE pg_temp._wa_incoming i SET contact_id = @extschema@._wa_contact_of(i.channel_id, i.wa_id, i.user_id)
         WHERE i.contact_id IS NULL AND (i.wa_id IS NOT NULL OR i.user_id IS NOT NULL);
    END IF;

    -- Keep every sender's contact current: the newest profile name and username given, the
    -- 24-hour window, and an id it lacked (unless another contact of the channel holds it:
    -- then the two stay apart rather than every later message failing). A row is only
    -- rewritten when something changed.
    UPDATE @extschema@.wa_contacts k
       SET wa_id = COALESCE(k.wa_id, s.free_wa_id),
           user_id = COALESCE(k.user_id, s.free_user_id),
           profile_name = COALESCE(s.name, k.profile_name),
           username = COALESCE(s.username, k.username),
           last_inbound_at = greatest(k.last_inbound_at, s.seen),
           updated_at = pg_catalog.now()
      FROM (SELECT g.*,
                   CASE WHEN g.wa_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o
                             WHERE o.channel_id = g.channel_id AND o.wa_id = g.wa_id) THEN g.wa_id END AS free_wa_id,
                   CASE WHEN g.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o
                             WHERE o.channel_id = g.channel_id AND o.user_id = g.user_id) THEN g.user_id END AS free_user_id
              FROM (SELECT i.contact_id, pg_catalog.min(i.channel_id) AS channel_id,
                           (pg_catalog.array_agg(i.wa_id ORDER BY i.ord DESC) FILTER (WHERE i.wa_id IS NOT NULL))[1] AS wa_id,
                           (pg_catalog.array_agg(i.user_id ORDER BY i.ord DESC) FILTER (WHERE i.user_id IS NOT NULL))[1] AS user_id,
                           (pg_catalog.array_agg(i.name ORDER BY i.ord DESC) FILTER (WHERE i.name IS NOT NULL))[1] AS name,
                           (pg_catalog.array_agg(i.username ORDER BY i.ord DESC) FILTER (WHERE i.username IS NOT NULL))[1] AS username,
                           pg_catalog.max(COALESCE(i.sent_at, pg_catalog.now())) FILTER (WHERE i.type <> 'system') AS seen
                      FROM pg_temp._wa_incoming i WHERE i.contact_id IS NOT NULL
                     GROUP BY i.contact_id) g) s
     WHERE k.id = s.contact_id
       AND ((k.wa_id IS NULL AND s.free_wa_id IS NOT NULL)
         OR (k.user_id IS NULL AND s.free_user_id IS NOT NULL)
         OR k.profile_name IS DISTINCT FROM COALESCE(s.name, k.profile_name)
         OR k.username IS DISTINCT FROM COALESCE(s.username, k.username)
         OR k.last_inbound_at IS DISTINCT FROM greatest(k.last_inbound_at, s.seen));

    WITH ins AS (
        INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, webhook_event_id, sent_at,
                                         edited_at, revoked_at,
                                         media_id, media_mime_type, media_sha256, media_filename,
                                         voice, latitude, longitude, location_name, location_address,
                                         reply_to_wamid, forwarded, frequently_forwarded, referral,
                                         reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                         button_payload, order_items, shared_contacts, system_type,
                                         original_wamid)
        SELECT i.channel_id, i.contact_id, 'inbound', i.wamid, i.type, i.body, 'received', i.payload, i.event_id, i.sent_at,
               later.edited_at, later.revoked_at, d.*
          FROM pg_temp._wa_incoming i
         CROSS JOIN LATERAL @extschema@._wa_message_columns(i.type, i.payload) d
         -- An edit or revoke of this message that arrived before it.
         CROSS JOIN LATERAL (SELECT pg_catalog.max(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'edit') AS edited_at,
                                    pg_catalog.min(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'revoke') AS revoked_at
                               FROM @extschema@.wa_messages e
                              WHERE e.channel_id = i.channel_id AND e.original_wamid = i.wamid) later
         ORDER BY i.ord
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING id, channel_id, contact_id, type, body, created_at, media_id, media_mime_type, media_sha256, system_type, original_wamid
    ), media AS (
        INSERT INTO @extschema@.wa_media (message_id, channel_id, media_id, mime_type, expected_sha256)
        SELECT ins.id, ins.channel_id, ins.media_id, ins.media_mime_type, ins.media_sha256 FROM ins WHERE ins.media_id IS NOT NULL
        RETURNING 1
    ), conversations AS (
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, contact_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT n.channel_id, n.contact_id, n.id, n.created_at, 'inbound', n.type, pg_catalog.left(n.body, 200), n.unread
          FROM (SELECT DISTINCT ON (ins.contact_id) ins.*, pg_catalog.count(*) OVER (PARTITION BY ins.contact_id) AS unread
                  FROM ins WHERE ins.contact_id IS NOT NULL
                 ORDER BY ins.contact_id, ins.id DESC) n
         -- (In contact order, so that concurrent writers lock conversations in the same order.)
         ORDER BY n.contact_id
        ON CONFLICT (channel_id, contact_id) DO UPDATE
           SET unread_count = s.unread_count + excluded.unread_count,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END
    )
    -- (A data-modifying WITH runs to its end whether or not it is read: conversations too.)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
               'id', n.id, 'channel', n.name, 'type', n.type, 'contact_id', n.contact_id)::text)),
           (SELECT pg_catalog.count(*) FROM media),
           (SELECT pg_catalog.array_agg(ins.id ORDER BY ins.id) FROM ins
             WHERE ins.system_type IN ('user_changed_number', 'user_changed_user_id') OR ins.original_wamid IS NOT NULL)
      INTO added, media_jobs, changed
      FROM (SELECT ins.id, c.name, ins.type, ins.contact_id FROM ins JOIN @extschema@.wa_channels c ON c.id = ins.channel_id
             ORDER BY ins.id) n;
    IF media_jobs > 0 THEN
        PERFORM @extschema@._wa_wake_delivery(); -- the delivery worker downloads media too
    END IF;
    IF changed IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_message_changes(changed);
    END IF;
    RETURN added;
END
$$;

-- What new messages change in rows stored before them: a system notice that the customer's
-- number or BSUID changed moves their contact to it; an edit or revoke marks the original
-- (if it arrived already; otherwise the original is marked when it comes).
CREATE FUNCTION _wa_apply_message_changes(message_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT x.* FROM @extschema@.wa_messages x WHERE x.id = ANY (message_ids) ORDER BY x.id LOOP
        IF m.type = 'system' AND m.contact_id IS NOT NULL THEN
            PERFORM @extschema@._wa_apply_identity_change(m.contact_id, m.payload -> 'system');
        ELSIF m.type = 'revoke' THEN
            UPDATE @extschema@.wa_messages o SET revoked_at = COALESCE(m.sent_at, m.created_at), updated_at = pg_catalog.now()
             WHERE o.channel_id = m.channel_id AND o.wamid = m.original_wamid AND o.revoked_at IS NULL;
        ELSIF m.type = 'edit' THEN
            -- (The latest edit, whichever order edits arrive in.)
            UPDATE @extschema@.wa_messages o SET edited_at = greatest(o.edited_at, COALESCE(m.sent_at, m.created_at)), updated_at = pg_catalog.now()
             WHERE o.channel_id = m.channel_id AND o.wamid = m.original_wamid;
        END IF;
    END LOOP;
END
$$;

-- Moves the outbound messages of these (channel, wamid) pairs to what their stored statuses
-- (wa_message_statuses) say: the highest-ranked status ('failed' ends it), and the time of
-- each status the message has a column for. Derived from the whole history, so the result
-- is the same whatever order and grouping the statuses arrived in. Notifies wa_status for
-- each message whose status moved. Returns how many moved.
CREATE FUNCTION _wa_apply_statuses(channels bigint[], wamids text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
AS $$
DECLARE
    moved integer;
BEGIN
    WITH target AS (
        SELECT m.id AS message_id, m.wamid, h.*,
               m.status <> 'failed' AND @extschema@._wa_status_rank(m.status) < @extschema@._wa_status_rank(h.top) AS moves
          FROM (SELECT DISTINCT u.ch, u.w FROM unnest(channels, wamids) AS u(ch, w)) key
         CROSS JOIN LATERAL (SELECT x.id, x.wamid, x.status FROM @extschema@.wa_messages x
                              WHERE x.channel_id = key.ch AND x.wamid = key.w AND x.direction = 'outbound' LIMIT 1) m
         CROSS JOIN LATERAL (
               SELECT (pg_catalog.array_agg(s.status ORDER BY @extschema@._wa_status_rank(s.status) DESC))[1] AS top,
                      pg_catalog.min(COALESCE(s.status_at, s.received_at)) FILTER (WHERE s.status = 'delivered') AS delivered_at,
                      pg_catalog.min(COALESCE(s.status_at, s.received_at)) FILTER (WHERE s.status = 'read') AS read_at,
                      pg_catalog.min(COALESCE(s.status_at, s.received_at)) FILTER (WHERE s.status = 'failed') AS failed_at,
                      (pg_catalog.array_agg(s.error_code) FILTER (WHERE s.status = 'failed'))[1] AS error_code,
                      (pg_catalog.array_agg(s.error_title) FILTER (WHERE s.status = 'failed'))[1] AS error_title,
                      (pg_catalog.array_agg(s.error_details) FILTER (WHERE s.status = 'failed'))[1] AS error_details
                 FROM @extschema@.wa_message_statuses s
                WHERE s.channel_id = key.ch AND s.wamid = key.w) h
         WHERE h.top IS NOT NULL
    ), upd AS (
        UPDATE @extschema@.wa_messages m
           SET status = CASE WHEN t.moves THEN t.top ELSE m.status END,
               delivered_at = COALESCE(m.delivered_at, t.delivered_at),
               read_at = COALESCE(m.read_at, t.read_at),
               failed_at = CASE WHEN t.moves AND t.top = 'failed' THEN t.failed_at ELSE m.failed_at END,
               error_code = CASE WHEN t.moves AND t.top = 'failed' THEN t.error_code ELSE m.error_code END,
               error_title = CASE WHEN t.moves AND t.top = 'failed' THEN t.error_title ELSE m.error_title END,
               error_details = CASE WHEN t.moves AND t.top = 'failed' THEN t.error_details ELSE m.error_details END,
               error_hint = CASE WHEN t.moves AND t.top = 'failed' THEN @extschema@.wa_error_hint(t.error_code) ELSE m.error_hint END,
               updated_at = pg_catalog.now()
          FROM target t
         WHERE m.id = t.message_id
           AND (t.moves OR (m.delivered_at IS NULL AND t.delivered_at IS NOT NULL) OR (m.read_at IS NULL AND t.read_at IS NOT NULL))
        RETURNING m.id, m.wamid, m.status, t.moves
    )
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object(
               'id', n.id, 'wamid', n.wamid, 'status', n.status)::text))
      INTO moved
      FROM (SELECT upd.* FROM upd WHERE upd.moves ORDER BY upd.id) n;
    RETURN moved;
END
$$;

-- Keeps status webhooks in the history (once per wamid and status) and applies the new ones
-- to their messages; returns how many were new. A status for a wamid not recorded yet (the
-- delivery worker has not recorded the send) waits in the history: _wa_mark_sent applies it.
CREATE FUNCTION _wa_receive_statuses(channels bigint[], wamids text[], statuses text[], status_ats double precision[],
                                     recipients text[], codes integer[], titles text[], details text[], payloads jsonb[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
AS $$
DECLARE
    new_channels bigint[];
    new_wamids   text[];
BEGIN
    -- Serialises with _wa_mark_sent for the same wamid: otherwise a status arriving while the
    -- send is being recorded would be seen by neither transaction and never applied. In wamid
    -- order (bytewise, as the delivery worker records sends), so the two cannot deadlock.
    PERFORM pg_catalog.count(pg_catalog.pg_advisory_xact_lock(k.lock))
       FROM (SELECT @extschema@._wa_wamid_lock(u.ch, u.w) AS lock
               FROM (SELECT DISTINCT u.ch, u.w FROM unnest(channels, wamids) AS u(ch, w)) u
              ORDER BY u.w COLLATE "C", u.ch OFFSET 0) k;
    WITH new AS (
        INSERT INTO @extschema@.wa_message_statuses (channel_id, wamid, status, status_at, recipient_id, error_code, error_title, error_details, payload)
        SELECT u.ch, u.w, u.st, @extschema@._wa_unix_time(u.ts), u.rcpt, u.code, u.title, u.det, u.pl
          FROM unnest(channels, wamids, statuses, status_ats, recipients, codes, titles, details, payloads)
               WITH ORDINALITY AS u(ch, w, st, ts, rcpt, code, title, det, pl, ord)
         ORDER BY u.ord
        ON CONFLICT (channel_id, wamid, status) DO NOTHING
        RETURNING channel_id, wamid
    )
    SELECT pg_catalog.array_agg(new.channel_id), pg_catalog.array_agg(new.wamid) INTO new_channels, new_wamids FROM new;
    IF new_wamids IS NULL THEN
        RETURN 0; -- all redeliveries
    END IF;
    PERFORM @extschema@._wa_apply_statuses(new_channels, new_wamids);
    RETURN pg_catalog.cardinality(new_wamids);
END
$$;

-- A customer changed their number (user_changed_number: system.wa_id is the new one) or their
-- business-scoped id (user_changed_user_id: system.user_id). The contact keeps its history; if
-- the new id already belongs to another contact of the channel, both stay as they are.
CREATE FUNCTION _wa_apply_identity_change(contact bigint, sys jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k @extschema@.wa_contacts;
BEGIN
    SELECT * INTO k FROM @extschema@.wa_contacts x WHERE x.id = contact;
    IF sys ->> 'type' = 'user_changed_number' AND sys ->> 'wa_id' IS NOT NULL THEN
        UPDATE @extschema@.wa_contacts x SET wa_id = sys ->> 'wa_id', updated_at = pg_catalog.now()
         WHERE x.id = contact
           AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o WHERE o.channel_id = k.channel_id AND o.wa_id = sys ->> 'wa_id');
    ELSIF sys ->> 'type' = 'user_changed_user_id' AND sys ->> 'user_id' IS NOT NULL THEN
        UPDATE @extschema@.wa_contacts x SET user_id = sys ->> 'user_id', updated_at = pg_catalog.now()
         WHERE x.id = contact
           AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o WHERE o.channel_id = k.channel_id AND o.user_id = sys ->> 'user_id');
    END IF;
END
$$;

-- Counts what the listener saw for a channel (see wa_channel_counters).
CREATE FUNCTION _wa_count(channel bigint, p_kind text, p_detail text, n bigint DEFAULT 1) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @extschema@.wa_channel_counters AS k (channel_id, kind, count, last_at, last_detail)
    VALUES (channel, p_kind, n, pg_catalog.now(), p_detail)
    ON CONFLICT (channel_id, kind) DO UPDATE
       SET count = k.count + n, last_at = pg_catalog.now(), last_detail = COALESCE(p_detail, k.last_detail);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Store procedures for the delivery worker

-- Claims the messages due now, at most one per recipient (the oldest queued one), so that
-- messages to one customer go out in the order they were queued.
-- The oldest message of a customer's queue that is not done yet (queued or in flight): the only
-- one of theirs that may be sent, so that they receive messages in the order they were queued.
-- A function so that the claim and _wa_next_due_in share it; the planner inlines it. It must
-- stay one probe of wa_messages_outbox per message whatever the statistics say (a queue grows
-- from empty faster than it is analyzed): min(p.id + 0), because for min(p.id) the planner may
-- walk the primary key from the oldest message of all instead (measured: 340 ms per claim).
CREATE FUNCTION _wa_queue_head(channel bigint, recipient text) RETURNS TABLE (id bigint)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT pg_catalog.min(p.id + 0) FROM @extschema@.wa_messages p
     WHERE p.channel_id = _wa_queue_head.channel AND p.recipient = _wa_queue_head.recipient
       AND p.status IN ('queued', 'sending');
END;

CREATE FUNCTION _wa_claim_due(max_messages integer, default_version text, budgets jsonb)
RETURNS TABLE (id bigint, channel_id bigint, max_per_second integer, attempts integer, phone_number_id text,
               graph_api_version text, access_token text, request text, recipient text, kind text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The statistics of a queue are always out of date (a burst fills it faster than it is
-- analyzed), and on them a bitmap scan of a whole channel plus a sort can look cheapest. Only
-- index scans: a queue is then read in due order and the reading stops at the LIMIT. (No JIT:
-- the cost penalty of the disabled scans would make every turn compile, 190 ms, measured.)
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    chosen bigint[];
BEGIN
    -- Claims the messages due now, at most one per recipient (the oldest queued one, and none
    -- while one is in flight), so that messages to one customer go out in the order they were
    -- queued; and per channel at most its budget (the worker's token bucket, `budgets`:
    -- {"<channel id>": n}; a channel not in it may use its full per-second rate). Paused and
    -- disabled channels are not read at all, and a channel's queue is read in due order
    -- (wa_messages_due) only until its budget is found: a long queue costs nothing per claim.
    SELECT pg_catalog.array_agg(d.id) INTO chosen
      FROM (SELECT m.id
              FROM @extschema@.wa_channels c
             CROSS JOIN LATERAL (
                    SELECT m.id, m.next_attempt_at
                      FROM @extschema@.wa_messages m
                     CROSS JOIN LATERAL @extschema@._wa_queue_head(m.channel_id, m.recipient) head
                     WHERE m.channel_id = c.id AND m.status = 'queued' AND m.next_attempt_at <= pg_catalog.now()
                       AND head.id = m.id
                     ORDER BY m.next_attempt_at
                     -- (The channel's own rate too: the worker's budget is from before a change
                     -- of it. least() skips the NULL budget of a channel the worker has not seen.)
                     LIMIT least(max_messages, c.max_messages_per_second, (budgets ->> c.id::text)::integer)
                   ) m
             WHERE c.enabled AND c.paused_at IS NULL
             ORDER BY m.next_attempt_at
             LIMIT max_messages) d;
    -- By primary key: the claim must not become a join the planner could get wrong.
    RETURN QUERY
    UPDATE @extschema@.wa_messages m
       SET status = 'sending', attempts = m.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE m.id = ANY (chosen) AND m.status = 'queued' AND c.id = m.channel_id AND s.channel_id = c.id
    RETURNING m.id, m.channel_id, c.max_messages_per_second, m.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token, m.payload::text, m.recipient, m.type;
END
$$;

-- Meta refused the channel's access token: stop sending for it (its queue waits) until
-- wa_set_access_token() is called, instead of failing every queued message.
CREATE FUNCTION _wa_pause_channel(msg_id bigint, reason text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_channels c SET paused_at = pg_catalog.now(), paused_reason = reason
      FROM @extschema@.wa_messages m WHERE m.id = msg_id AND c.id = m.channel_id;
    -- The attempt was not the message's fault: it goes back to the queue unchanged.
    UPDATE @extschema@.wa_messages m SET status = 'queued', attempts = m.attempts - 1, updated_at = pg_catalog.now()
     WHERE m.id = msg_id AND m.status = 'sending';
END;

-- The rest of a customer's queue waits as long as its head (a retry, the pair rate): later
-- messages cannot be sent before it anyway, and left due they would be read by every claim.
CREATE FUNCTION _wa_hold_behind(channel bigint, p_recipient text, head bigint, until timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.wa_messages x SET next_attempt_at = until
     WHERE x.channel_id = channel AND x.recipient = p_recipient AND x.status = 'queued'
       AND x.id > head AND x.next_attempt_at < until;
END
$$;

-- A claimed message that must wait (Meta's pair rate: see the delivery worker) goes back to the
-- queue unsent, and so does the rest of that customer's queue: claims do not read it until then.
CREATE FUNCTION _wa_defer(msg_id bigint, delay_seconds double precision) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages;
    until timestamptz := pg_catalog.now() + pg_catalog.make_interval(secs => delay_seconds);
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'queued', attempts = x.attempts - 1, next_attempt_at = until, updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status = 'sending'
    RETURNING * INTO m;
    IF FOUND THEN
        PERFORM @extschema@._wa_hold_behind(m.channel_id, m.recipient, m.id, until);
    END IF;
END
$$;

-- Seconds until the next queued message that could be claimed falls due (the oldest message of
-- each recipient, not behind one in flight, of a channel that sends), or the next media
-- download; NULL when there is none.
CREATE FUNCTION _wa_next_due_in() RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (See _wa_claim_due.)
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    due timestamptz;
BEGIN
    SELECT least(
        (SELECT pg_catalog.min(h.next_attempt_at)
           FROM @extschema@.wa_channels c
          CROSS JOIN LATERAL (
                SELECT m.next_attempt_at FROM @extschema@.wa_messages m
                 CROSS JOIN LATERAL @extschema@._wa_queue_head(m.channel_id, m.recipient) head
                 WHERE m.channel_id = c.id AND m.status = 'queued' AND head.id = m.id
                 ORDER BY m.next_attempt_at
                 LIMIT 1) h
          WHERE c.enabled AND c.paused_at IS NULL),
        -- media downloads waiting for a retry
        (SELECT pg_catalog.min(j.next_attempt_at) FROM @extschema@.wa_media j WHERE j.status = 'pending'))
      INTO due;
    -- (greatest() ignores NULL: nothing due must stay NULL, not become 0.)
    RETURN CASE WHEN due IS NOT NULL THEN greatest(0, extract(epoch FROM due - pg_catalog.now()))::double precision END;
END
$$;

-- After a crash between claiming and recording, claimed messages go back to the queue. This is
-- the one window in which a message can be sent twice (see README, "Delivery guarantees").
CREATE FUNCTION _wa_requeue_interrupted() RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        UPDATE @extschema@.wa_messages m SET status = 'queued', updated_at = pg_catalog.now()
         WHERE m.status = 'sending' RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM r
$$;

CREATE FUNCTION _wa_mark_sent(msg_id bigint, p_wamid text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages;
BEGIN
    IF p_wamid IS NOT NULL THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(@extschema@._wa_wamid_lock(
            (SELECT x.channel_id FROM @extschema@.wa_messages x WHERE x.id = msg_id), p_wamid));
    END IF;
    UPDATE @extschema@.wa_messages x
       SET status = 'sent', wamid = p_wamid, sent_at = pg_catalog.now(), next_attempt_at = NULL,
           error_code = NULL, error_title = NULL, error_details = NULL, error_hint = NULL,
           updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status = 'sending'
    RETURNING * INTO m;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', m.id, 'wamid', p_wamid, 'status', 'sent')::text);
    -- Statuses that arrived before this wamid was known: apply them now.
    PERFORM @extschema@._wa_apply_statuses(ARRAY[m.channel_id], ARRAY[p_wamid]);
END
$$;

CREATE FUNCTION _wa_mark_failed(msg_id bigint, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL,
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status = 'sending';
    IF FOUND THEN
        PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', msg_id, 'wamid', NULL, 'status', 'failed')::text);
    END IF;
END
$$;

CREATE FUNCTION _wa_mark_retry(msg_id bigint, delay_seconds double precision, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages;
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'queued', next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => delay_seconds),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status = 'sending'
    RETURNING * INTO m;
    IF FOUND THEN
        PERFORM @extschema@._wa_hold_behind(m.channel_id, m.recipient, m.id, m.next_attempt_at);
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Media downloads (done by the delivery worker)

CREATE FUNCTION _wa_claim_media(max_jobs integer, default_version text)
RETURNS TABLE (message_id bigint, media_id text, expected_sha256 text, attempts integer, phone_number_id text,
               graph_api_version text, access_token text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT j.message_id FROM @extschema@.wa_media j
         WHERE j.status = 'pending' AND j.next_attempt_at <= pg_catalog.now()
         ORDER BY j.next_attempt_at LIMIT max_jobs
    )
    UPDATE @extschema@.wa_media j
       SET status = 'downloading', attempts = j.attempts + 1, updated_at = pg_catalog.now()
      FROM due, @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE j.message_id = due.message_id AND c.id = j.channel_id AND s.channel_id = c.id
    RETURNING j.message_id, j.media_id, j.expected_sha256, j.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token;
END
$$;

-- Records the end of a download job: 'done' (with the bytes, unless only metadata is kept),
-- 'failed' or 'skipped'; or back to 'pending' after `retry_in` seconds. Notifies wa_media.
CREATE FUNCTION _wa_finish_media(p_message_id bigint, p_status text, p_mime_type text, p_sha256 text, p_size bigint,
                                 p_content bytea, p_error text, retry_in double precision) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF retry_in IS NOT NULL THEN
        UPDATE @extschema@.wa_media j
           SET status = 'pending', next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => retry_in),
               error = p_error, updated_at = pg_catalog.now()
         WHERE j.message_id = p_message_id AND j.status = 'downloading';
        RETURN;
    END IF;
    UPDATE @extschema@.wa_media j
       SET status = p_status, mime_type = COALESCE(p_mime_type, j.mime_type), sha256 = p_sha256, size = p_size,
           content = p_content, error = p_error, updated_at = pg_catalog.now()
     WHERE j.message_id = p_message_id AND j.status = 'downloading';
    IF FOUND THEN
        PERFORM pg_catalog.pg_notify('wa_media', pg_catalog.json_build_object('message_id', p_message_id, 'status', p_status)::text);
    END IF;
END
$$;

-- Downloads interrupted by a restart go back to the queue.
CREATE FUNCTION _wa_requeue_media() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_media j SET status = 'pending', updated_at = pg_catalog.now() WHERE j.status = 'downloading';
END;

-- The bytes of a message's media, once downloaded (NULL before, or if they were not kept).
CREATE FUNCTION wa_media_content(message_id bigint) RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT j.content FROM @extschema@.wa_media j WHERE j.message_id = wa_media_content.message_id AND j.status = 'done';
END;

-- ---------------------------------------------------------------------------------------------
-- Views for inbox apps

-- One row per conversation (a channel and a contact): the last message, how many inbound
-- messages came since the business last wrote or marked them read (unread), and when the
-- 24-hour customer-service window closes (only a message from the customer opens or extends
-- it; outside it only templates may be sent). Read from wa_conversation_state, which every
-- message keeps current, so the inbox's list (WHERE channel_id = $1 ORDER BY last_message_at
-- DESC NULLS LAST LIMIT 50) is an index scan however many conversations there are.
CREATE VIEW wa_conversations AS
SELECT s.channel_id, c.name AS channel, s.contact_id, k.wa_id, k.user_id, k.profile_name, k.username,
       s.last_message_id, s.last_direction, s.last_type, s.last_preview AS last_body,
       s.last_message_at, s.unread_count,
       k.last_inbound_at AS last_customer_message_at,
       k.last_inbound_at + interval '24 hours' AS window_closes_at,
       COALESCE(k.last_inbound_at + interval '24 hours' > pg_catalog.now(), false) AS window_open,
       s.id AS conversation_id
  FROM @extschema@.wa_conversation_state s
  JOIN @extschema@.wa_channels c ON c.id = s.channel_id
  JOIN @extschema@.wa_contacts k ON k.id = s.contact_id;

-- Rebuilds wa_conversation_state from wa_messages (for an upgrade from a version that did not
-- keep it, or after rows were changed by hand): the same result as the incremental updates.
CREATE FUNCTION _wa_rebuild_conversations(channel bigint DEFAULT NULL) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    DELETE FROM @extschema@.wa_conversation_state s WHERE _wa_rebuild_conversations.channel IS NULL OR s.channel_id = _wa_rebuild_conversations.channel;
    WITH rebuilt AS (
        INSERT INTO @extschema@.wa_conversation_state
               (channel_id, contact_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT k.channel_id, k.id, last.id, last.created_at, last.direction, last.type, pg_catalog.left(last.body, 200),
               (SELECT pg_catalog.count(*) FROM @extschema@.wa_messages i
                 WHERE i.contact_id = k.id AND i.direction = 'inbound'
                   AND i.id > COALESCE((SELECT pg_catalog.max(o.id) FROM @extschema@.wa_messages o
                                         WHERE o.contact_id = k.id AND o.direction = 'outbound'), 0))
          FROM @extschema@.wa_contacts k
          JOIN LATERAL (SELECT m.id, m.created_at, m.direction, m.type, m.body FROM @extschema@.wa_messages m
                         WHERE m.contact_id = k.id AND m.type <> 'mark_read' ORDER BY m.id DESC LIMIT 1) last ON true
         WHERE _wa_rebuild_conversations.channel IS NULL OR k.channel_id = _wa_rebuild_conversations.channel
        RETURNING 1)
    SELECT pg_catalog.count(*) FROM rebuilt;
END;

-- One row per channel, answering the seed's "Common issues": is Meta reaching us, with the
-- right secret and token, and is anything failing on the way out?
CREATE VIEW wa_channel_health AS
SELECT c.id AS channel_id, c.name AS channel, c.phone_number_id, c.enabled,
       c.paused_at AS outbox_paused_at, c.paused_reason AS outbox_paused_reason,
       (SELECT k.last_at FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'verified') AS last_verified_handshake_at,
       (SELECT max(k.last_at) FROM @extschema@.wa_channel_counters k
         WHERE k.channel_id = c.id AND k.kind IN ('stored', 'partial', 'invalid_payload')) AS last_verified_post_at,
       (SELECT k.last_at FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'signature_mismatch') AS last_signature_failure_at,
       (SELECT k.last_detail FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'signature_mismatch') AS last_signature_failure_cause,
       (SELECT k.last_at FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'verify_token_mismatch') AS last_verify_token_mismatch_at,
       (SELECT k.last_at FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'unrouted') AS last_unrouted_at,
       (SELECT k.last_detail FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'unrouted') AS last_unrouted_phone_number_id,
       COALESCE((SELECT pg_catalog.jsonb_object_agg(k.kind, k.count) FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id), '{}') AS counts,
       (SELECT count(*) FROM @extschema@.wa_messages m WHERE m.channel_id = c.id AND m.status IN ('queued', 'sending')) AS outbox_queued,
       (SELECT max(m.failed_at) FROM @extschema@.wa_messages m WHERE m.channel_id = c.id AND m.status = 'failed') AS last_send_failure_at,
       (SELECT m.error_hint FROM @extschema@.wa_messages m WHERE m.channel_id = c.id AND m.status = 'failed'
         ORDER BY m.failed_at DESC NULLS LAST LIMIT 1) AS last_send_failure_hint
  FROM @extschema@.wa_channels c;

-- ---------------------------------------------------------------------------------------------
-- Privileges. Nothing is granted to PUBLIC but the pure helpers; see README, "Roles".

REVOKE ALL ON FUNCTION _wa_enqueue(text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_enqueue_target(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_wamid_lock(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_message_columns(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_text(text, text, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_media(text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_template(text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_check_template(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_template_status(bigint, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_sync_templates(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_interactive(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_location(text, text, double precision, double precision, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_reaction(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_mark_read(text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_set_access_token(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_counterpart(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_pause_channel(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_add_channel(text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_replay_webhook_events(bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_wake_delivery() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_identity_change(bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_count(bigint, text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_claim_media(integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_finish_media(bigint, text, text, text, bigint, bytea, text, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_requeue_media() FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_media_content(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_upload_media(text, bytea, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_contact_of(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_message_changes(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_statuses(bigint[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_statuses(bigint[], text[], text[], double precision[], text[], integer[], text[], text[], jsonb[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_messages(bigint[], bigint[], text[], text[], text[], text[], text[], text[], text[], double precision[], jsonb[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_claim_due(integer, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_requeue_interrupted() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_sent(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_failed(bigint, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_channel_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_outbound_conversation() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_rebuild_conversations(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_unix_time(double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_queue_head(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_hold_behind(bigint, text, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_defer(bigint, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_retry(bigint, double precision, integer, text, text) FROM PUBLIC;
