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

-- ---------------------------------------------------------------------------------------------
-- Store procedures for the webhook listener (called by the worker, one per item)

CREATE FUNCTION _wa_upsert_contact(channel bigint, p_wa_id text, p_user_id text, p_name text, p_username text, p_seen timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    contact bigint;
BEGIN
    IF p_wa_id IS NULL AND p_user_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT k.id INTO contact FROM @extschema@.wa_contacts k
     WHERE k.channel_id = channel AND (k.wa_id = p_wa_id OR k.user_id = p_user_id)
     ORDER BY (k.wa_id = p_wa_id) DESC NULLS LAST LIMIT 1;
    IF contact IS NULL THEN
        INSERT INTO @extschema@.wa_contacts (channel_id, wa_id, user_id, profile_name, username, last_inbound_at)
        VALUES (channel, p_wa_id, p_user_id, p_name, p_username, p_seen)
        RETURNING id INTO contact;
    ELSE
        UPDATE @extschema@.wa_contacts k
           -- An id another contact of the channel already holds is not taken over (the two
           -- stay apart rather than every later message failing on the unique constraint).
           SET wa_id = CASE WHEN k.wa_id IS NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o
                                WHERE o.channel_id = channel AND o.wa_id = p_wa_id) THEN p_wa_id ELSE k.wa_id END,
               user_id = CASE WHEN k.user_id IS NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o
                                WHERE o.channel_id = channel AND o.user_id = p_user_id) THEN p_user_id ELSE k.user_id END,
               profile_name = coalesce(p_name, k.profile_name),
               username = coalesce(p_username, k.username),
               last_inbound_at = greatest(k.last_inbound_at, p_seen),
               updated_at = pg_catalog.now()
         WHERE k.id = contact;
    END IF;
    RETURN contact;
END
$$;

-- Stores one inbound message; returns its id, or NULL if this wamid was stored before
-- (a redelivery), in which case nothing is notified again.
CREATE FUNCTION _wa_receive_message(
    channel bigint, event bigint, p_wamid text, p_from text, p_from_user_id text, p_name text, p_username text,
    p_type text, p_body text, p_sent_at timestamptz, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    contact bigint;
    msg_id  bigint;
BEGIN
    -- A system notice is not the customer writing: it does not open the 24-hour window.
    contact := @extschema@._wa_upsert_contact(channel, p_from, p_from_user_id, p_name, p_username,
        CASE WHEN p_type = 'system' THEN NULL ELSE COALESCE(p_sent_at, pg_catalog.now()) END);
    INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, webhook_event_id, sent_at,
                                     media_id, media_mime_type, media_sha256, media_filename,
                                     voice, latitude, longitude, location_name, location_address,
                                     reply_to_wamid, forwarded, frequently_forwarded, referral,
                                     reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                     button_payload, order_items, shared_contacts, system_type,
                                     original_wamid)
    SELECT channel, contact, 'inbound', p_wamid, p_type, p_body, 'received', p_payload, event, p_sent_at, d.*
      FROM @extschema@._wa_message_columns(p_type, p_payload) d
    ON CONFLICT (channel_id, wamid) DO NOTHING
    RETURNING id INTO msg_id;
    IF msg_id IS NULL THEN
        RETURN NULL; -- redelivery: everything below was done the first time
    END IF;
    PERFORM @extschema@._wa_queue_media(msg_id);
    IF p_type = 'system' AND contact IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_identity_change(contact, p_payload -> 'system');
    ELSIF p_type = 'revoke' THEN
        UPDATE @extschema@.wa_messages o SET revoked_at = COALESCE(p_sent_at, pg_catalog.now()), updated_at = pg_catalog.now()
         WHERE o.channel_id = channel AND o.wamid = p_payload -> 'revoke' ->> 'original_message_id';
    ELSIF p_type = 'edit' THEN
        UPDATE @extschema@.wa_messages o SET edited_at = COALESCE(p_sent_at, pg_catalog.now()), updated_at = pg_catalog.now()
         WHERE o.channel_id = channel AND o.wamid = p_payload -> 'edit' ->> 'original_message_id';
    END IF;
    PERFORM pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
        'id', msg_id, 'channel', (SELECT c.name FROM @extschema@.wa_channels c WHERE c.id = channel),
        'type', p_type, 'contact_id', contact)::text);
    RETURN msg_id;
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

-- Stores many inbound messages at once, set-based: the listener's fast path for a batch of
-- webhooks that arrived together (plain messages only: system changes, revokes and edits take
-- the per-item path). Same effects as _wa_receive_message() per item, in one statement each
-- for contacts and messages. Returns how many messages were new (each is notified).
CREATE FUNCTION _wa_receive_messages(
    channels bigint[], events bigint[], wamids text[], froms text[], from_user_ids text[], names text[], usernames text[],
    types text[], bodies text[], sent_ats double precision[], payloads jsonb[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added      integer;
    media_jobs integer;
BEGIN
    -- A session-local staging table, so the batch is unnested once and read three times.
    IF pg_catalog.to_regclass('pg_temp._wa_incoming') IS NULL THEN
        CREATE TEMP TABLE _wa_incoming (
            ord bigint, channel_id bigint, event_id bigint, wamid text, wa_id text, user_id text, name text, username text,
            type text, body text, sent_at timestamptz, payload jsonb) ON COMMIT DELETE ROWS;
    END IF;
    DELETE FROM pg_temp._wa_incoming;
    INSERT INTO pg_temp._wa_incoming
    SELECT u.ord, u.ch, u.ev, u.wamid, u.wa, u.uid, u.nm, u.un, u.ty, u.bd, pg_catalog.to_timestamp(u.ts), u.pl
      FROM unnest(channels, events, wamids, froms, from_user_ids, names, usernames, types, bodies, sent_ats, payloads)
           WITH ORDINALITY AS u(ch, ev, wamid, wa, uid, nm, un, ty, bd, ts, pl, ord);

    -- Senders with a WhatsApp id, then senders known only by their BSUID; the newest message's
    -- profile wins, and a contact row is only rewritten when something changed.
    INSERT INTO @extschema@.wa_contacts AS k (channel_id, wa_id, user_id, profile_name, username, last_inbound_at)
    SELECT DISTINCT ON (i.channel_id, i.wa_id) i.channel_id, i.wa_id, i.user_id, i.name, i.username, COALESCE(i.sent_at, pg_catalog.now())
      FROM pg_temp._wa_incoming i WHERE i.wa_id IS NOT NULL
     ORDER BY i.channel_id, i.wa_id, i.ord DESC
    ON CONFLICT (channel_id, wa_id) DO UPDATE
       SET user_id = CASE WHEN k.user_id IS NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o
                               WHERE o.channel_id = k.channel_id AND o.user_id = excluded.user_id)
                          THEN excluded.user_id ELSE k.user_id END,
           profile_name = COALESCE(excluded.profile_name, k.profile_name),
           username = COALESCE(excluded.username, k.username),
           last_inbound_at = greatest(k.last_inbound_at, excluded.last_inbound_at),
           updated_at = pg_catalog.now()
     WHERE (k.user_id IS NULL AND excluded.user_id IS NOT NULL)
        OR k.profile_name IS DISTINCT FROM COALESCE(excluded.profile_name, k.profile_name)
        OR k.username IS DISTINCT FROM COALESCE(excluded.username, k.username)
        OR k.last_inbound_at IS DISTINCT FROM greatest(k.last_inbound_at, excluded.last_inbound_at);
    INSERT INTO @extschema@.wa_contacts AS k (channel_id, user_id, profile_name, username, last_inbound_at)
    SELECT DISTINCT ON (i.channel_id, i.user_id) i.channel_id, i.user_id, i.name, i.username, COALESCE(i.sent_at, pg_catalog.now())
      FROM pg_temp._wa_incoming i WHERE i.wa_id IS NULL AND i.user_id IS NOT NULL
     ORDER BY i.channel_id, i.user_id, i.ord DESC
    ON CONFLICT (channel_id, user_id) DO UPDATE
       SET profile_name = COALESCE(excluded.profile_name, k.profile_name),
           username = COALESCE(excluded.username, k.username),
           last_inbound_at = greatest(k.last_inbound_at, excluded.last_inbound_at),
           updated_at = pg_catalog.now()
     WHERE k.profile_name IS DISTINCT FROM COALESCE(excluded.profile_name, k.profile_name)
        OR k.username IS DISTINCT FROM COALESCE(excluded.username, k.username)
        OR k.last_inbound_at IS DISTINCT FROM greatest(k.last_inbound_at, excluded.last_inbound_at);

    WITH ins AS (
        INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, webhook_event_id, sent_at,
                                     media_id, media_mime_type, media_sha256, media_filename,
                                     voice, latitude, longitude, location_name, location_address,
                                     reply_to_wamid, forwarded, frequently_forwarded, referral,
                                     reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                     button_payload, order_items, shared_contacts, system_type,
                                     original_wamid)
        SELECT i.channel_id, k.id, 'inbound', i.wamid, i.type, i.body, 'received', i.payload, i.event_id, i.sent_at, d.*
          FROM pg_temp._wa_incoming i
          LEFT JOIN @extschema@.wa_contacts k
            ON k.channel_id = i.channel_id
           AND ((i.wa_id IS NOT NULL AND k.wa_id = i.wa_id) OR (i.wa_id IS NULL AND k.user_id = i.user_id))
         CROSS JOIN LATERAL @extschema@._wa_message_columns(i.type, i.payload) d
         ORDER BY i.ord
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING id, channel_id, type, contact_id, media_id, media_mime_type, media_sha256
    ), media AS (
        INSERT INTO @extschema@.wa_media (message_id, channel_id, media_id, mime_type, expected_sha256)
        SELECT ins.id, ins.channel_id, ins.media_id, ins.media_mime_type, ins.media_sha256 FROM ins WHERE ins.media_id IS NOT NULL
        RETURNING 1
    )
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
               'id', n.id, 'channel', n.name, 'type', n.type, 'contact_id', n.contact_id)::text)),
           (SELECT pg_catalog.count(*) FROM media)
      INTO added, media_jobs
      FROM (SELECT ins.id, c.name, ins.type, ins.contact_id FROM ins JOIN @extschema@.wa_channels c ON c.id = ins.channel_id
             ORDER BY ins.id) n;
    IF media_jobs > 0 THEN
        PERFORM @extschema@._wa_wake_delivery(); -- the delivery worker downloads media too
    END IF;
    RETURN added;
END
$$;

-- Moves an outbound message forward to `new_status` if that is progress; notifies wa_status.
CREATE FUNCTION _wa_apply_status(channel bigint, p_wamid text, new_status text, p_at timestamptz,
                                 p_code integer, p_title text, p_details text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    msg_id bigint;
BEGIN
    UPDATE @extschema@.wa_messages m
       SET status = new_status,
           delivered_at = CASE WHEN new_status = 'delivered' THEN p_at ELSE m.delivered_at END,
           read_at = CASE WHEN new_status = 'read' THEN p_at ELSE m.read_at END,
           failed_at = CASE WHEN new_status = 'failed' THEN p_at ELSE m.failed_at END,
           error_code = CASE WHEN new_status = 'failed' THEN p_code ELSE m.error_code END,
           error_title = CASE WHEN new_status = 'failed' THEN p_title ELSE m.error_title END,
           error_details = CASE WHEN new_status = 'failed' THEN p_details ELSE m.error_details END,
           error_hint = CASE WHEN new_status = 'failed' THEN @extschema@.wa_error_hint(p_code) ELSE m.error_hint END,
           updated_at = pg_catalog.now()
     WHERE m.channel_id = channel AND m.wamid = p_wamid AND m.direction = 'outbound'
       AND m.status <> 'failed'
       AND @extschema@._wa_status_rank(m.status) < @extschema@._wa_status_rank(new_status)
    RETURNING m.id INTO msg_id;
    IF msg_id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object(
        'id', msg_id, 'wamid', p_wamid, 'status', new_status)::text);
    RETURN true;
END
$$;

-- Keeps one status webhook in the history (once per wamid and status) and applies it.
CREATE FUNCTION _wa_receive_status(channel bigint, p_wamid text, p_status text, p_at timestamptz, p_recipient text,
                                   p_code integer, p_title text, p_details text, p_payload jsonb)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Serialises with _wa_mark_sent for the same wamid: otherwise a status arriving while the
    -- send is being recorded would be seen by neither transaction and never applied.
    PERFORM pg_catalog.pg_advisory_xact_lock(@extschema@._wa_wamid_lock(channel, p_wamid));
    INSERT INTO @extschema@.wa_message_statuses (channel_id, wamid, status, status_at, recipient_id, error_code, error_title, error_details, payload)
    VALUES (channel, p_wamid, p_status, p_at, p_recipient, p_code, p_title, p_details, p_payload)
    ON CONFLICT (channel_id, wamid, status) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false; -- redelivery
    END IF;
    PERFORM @extschema@._wa_apply_status(channel, p_wamid, p_status, coalesce(p_at, pg_catalog.now()),
                                         p_code, p_title, p_details);
    RETURN true;
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
    st record;
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
    -- Statuses that arrived before this wamid was known: apply them now, in order.
    FOR st IN SELECT * FROM @extschema@.wa_message_statuses h
               WHERE h.channel_id = m.channel_id AND h.wamid = p_wamid
               ORDER BY @extschema@._wa_status_rank(h.status)
    LOOP
        PERFORM @extschema@._wa_apply_status(m.channel_id, p_wamid, st.status, coalesce(st.status_at, st.received_at),
                                             st.error_code, st.error_title, st.error_details);
    END LOOP;
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

-- Queues the download of an inbound message's media, if it has any.
CREATE FUNCTION _wa_queue_media(msg_id bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @extschema@.wa_media (message_id, channel_id, media_id, mime_type, expected_sha256)
    SELECT m.id, m.channel_id, m.media_id, m.media_mime_type, m.media_sha256
      FROM @extschema@.wa_messages m WHERE m.id = msg_id AND m.direction = 'inbound' AND m.media_id IS NOT NULL;
    IF FOUND THEN
        PERFORM @extschema@._wa_wake_delivery();
    END IF;
END
$$;

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

-- One row per channel and contact: the last message, how many inbound messages came after the
-- business last wrote (unread), and when the 24-hour customer-service window closes (only a
-- message from the customer opens or extends it; outside it only templates may be sent).
CREATE VIEW wa_conversations AS
SELECT c.id AS channel_id, c.name AS channel, k.id AS contact_id, k.wa_id, k.user_id, k.profile_name, k.username,
       last.id AS last_message_id, last.direction AS last_direction, last.type AS last_type, last.body AS last_body,
       last.created_at AS last_message_at,
       (SELECT count(*) FROM @extschema@.wa_messages i
         WHERE i.contact_id = k.id AND i.direction = 'inbound'
           AND i.id > COALESCE((SELECT max(o.id) FROM @extschema@.wa_messages o
                                 WHERE o.contact_id = k.id AND o.direction = 'outbound'), 0)) AS unread_count,
       k.last_inbound_at AS last_customer_message_at,
       k.last_inbound_at + interval '24 hours' AS window_closes_at,
       COALESCE(k.last_inbound_at + interval '24 hours' > pg_catalog.now(), false) AS window_open
  FROM @extschema@.wa_contacts k
  JOIN @extschema@.wa_channels c ON c.id = k.channel_id
  LEFT JOIN LATERAL (SELECT m.id, m.direction, m.type, m.body, m.created_at
                       FROM @extschema@.wa_messages m WHERE m.contact_id = k.id
                      ORDER BY m.id DESC LIMIT 1) last ON true;

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
REVOKE ALL ON FUNCTION _wa_upsert_contact(bigint, text, text, text, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_identity_change(bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_count(bigint, text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_queue_media(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_claim_media(integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_finish_media(bigint, text, text, text, bigint, bytea, text, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_requeue_media() FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_media_content(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_upload_media(text, bytea, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_messages(bigint[], bigint[], text[], text[], text[], text[], text[], text[], text[], double precision[], jsonb[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_message(bigint, bigint, text, text, text, text, text, text, text, timestamptz, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_status(bigint, text, text, timestamptz, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_status(bigint, text, text, timestamptz, text, integer, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_claim_due(integer, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_requeue_interrupted() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_sent(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_failed(bigint, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_channel_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_queue_head(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_hold_behind(bigint, text, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_defer(bigint, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_retry(bigint, double precision, integer, text, text) FROM PUBLIC;
