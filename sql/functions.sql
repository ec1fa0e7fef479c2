-- whatsapp_channel: the SQL half of the API and the store procedures the workers call.
-- Runs last in CREATE EXTENSION (finalize), after the Rust functions exist.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- Ordering of outbound statuses: a status is applied only if it moves the message forward;
-- 'failed' is terminal.
CREATE FUNCTION _wa_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE status
    WHEN 'queued' THEN 0 WHEN 'sending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
    WHEN 'read' THEN 3 WHEN 'played' THEN 4 WHEN 'failed' THEN 100 ELSE -1 END;

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

CREATE FUNCTION wa_send_text(channel text, recipient text, body text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch  @extschema@.wa_channels;
    to_ text := @extschema@.wa_normalize_phone(recipient);
    msg_id bigint;
BEGIN
    SELECT * INTO ch FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF body IS NULL OR pg_catalog.btrim(body) = '' THEN
        RAISE EXCEPTION 'message body is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.char_length(body) > 4096 THEN
        RAISE EXCEPTION 'message body has % characters; WhatsApp allows at most 4096', pg_catalog.char_length(body)
            USING ERRCODE = 'string_data_right_truncation', HINT = 'Split the text into several messages.';
    END IF;
    INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, type, body, status, recipient, payload, next_attempt_at)
    VALUES (ch.id,
            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = ch.id AND k.wa_id = pg_catalog.ltrim(to_, '+')),
            'outbound', 'text', body, 'queued', to_,
            @extschema@._wa_text_request(to_, body), pg_catalog.now())
    RETURNING id INTO msg_id;
    -- Wakes the delivery worker when (and only if) this transaction commits.
    PERFORM @extschema@._wa_wake_delivery();
    RETURN msg_id;
END
$$;

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
           SET wa_id = coalesce(k.wa_id, p_wa_id),
               user_id = coalesce(k.user_id, p_user_id),
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
    contact := @extschema@._wa_upsert_contact(channel, p_from, p_from_user_id, p_name, p_username,
                                              coalesce(p_sent_at, pg_catalog.now()));
    INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, webhook_event_id, sent_at)
    VALUES (channel, contact, 'inbound', p_wamid, p_type, p_body, 'received', p_payload, event, p_sent_at)
    ON CONFLICT (channel_id, wamid) DO NOTHING
    RETURNING id INTO msg_id;
    IF msg_id IS NOT NULL THEN
        PERFORM pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
            'id', msg_id, 'channel', (SELECT c.name FROM @extschema@.wa_channels c WHERE c.id = channel),
            'type', p_type, 'contact_id', contact)::text);
    END IF;
    RETURN msg_id;
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
CREATE FUNCTION _wa_claim_due(max_messages integer, default_version text)
RETURNS TABLE (id bigint, attempts integer, phone_number_id text, graph_api_version text, access_token text, request text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH heads AS (
        SELECT DISTINCT ON (m.channel_id, m.recipient) m.id, m.next_attempt_at
          FROM @extschema@.wa_messages m
         WHERE m.status = 'queued'
         ORDER BY m.channel_id, m.recipient, m.id
    ), due AS (
        SELECT h.id FROM heads h
         WHERE h.next_attempt_at <= pg_catalog.now()
           AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_messages s, @extschema@.wa_messages q
                            WHERE q.id = h.id AND s.status = 'sending'
                              AND s.channel_id = q.channel_id AND s.recipient = q.recipient)
         ORDER BY h.next_attempt_at, h.id
         LIMIT max_messages
    )
    UPDATE @extschema@.wa_messages m
       SET status = 'sending', attempts = m.attempts + 1, updated_at = pg_catalog.now()
      FROM due, @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE m.id = due.id AND c.id = m.channel_id AND s.channel_id = c.id
    RETURNING m.id, m.attempts, c.phone_number_id, coalesce(c.graph_api_version, default_version),
              s.access_token, m.payload::text
$$;

-- Seconds until the next queued message is due (NULL: nothing queued).
CREATE FUNCTION _wa_next_due_in() RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(0, extract(epoch FROM pg_catalog.min(m.next_attempt_at) - pg_catalog.now()))::double precision
      FROM @extschema@.wa_messages m WHERE m.status = 'queued'
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
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE @extschema@.wa_messages x
       SET status = 'queued', next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => delay_seconds),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status = 'sending'
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges. Nothing is granted to PUBLIC but the pure helpers; see README, "Roles".

REVOKE ALL ON FUNCTION wa_send_text(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_add_channel(text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_wake_delivery() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_upsert_contact(bigint, text, text, text, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_message(bigint, bigint, text, text, text, text, text, text, text, timestamptz, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_status(bigint, text, text, timestamptz, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_status(bigint, text, text, timestamptz, text, integer, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_claim_due(integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_requeue_interrupted() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_sent(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_failed(bigint, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_retry(bigint, double precision, integer, text, text) FROM PUBLIC;
