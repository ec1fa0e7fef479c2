-- whatsapp_channel: the outbound path: the send functions of the SQL API, the enqueue, and the
-- store procedures of the delivery worker.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- ---------------------------------------------------------------------------------------------
-- API

-- The channel a message may be queued on, and the customer or group it goes to: no row when
-- the channel is unknown or disabled, when a group is not an active group of the channel, or
-- when the customer's (or the group's) 24-hour window is closed to this type of message (Meta
-- accepts free-form messages only within 24 hours of the customer's last message; outside it
-- they fail later with 131047: refused here, where the caller can act). The planner inlines it
-- into _wa_enqueue's INSERTs; for a 1:1 message the group's lookup is a one-time `false`.
CREATE FUNCTION _wa_enqueue_target(channel text, recipient text, p_type text, to_group boolean)
RETURNS TABLE (channel_id bigint, contact_id bigint, group_id text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.id, k.id, g.group_id
      FROM @extschema@.wa_channels c
      LEFT JOIN LATERAL (SELECT k.id, k.last_inbound_at FROM @extschema@.wa_contacts k
                          WHERE NOT _wa_enqueue_target.to_group
                            AND k.channel_id = c.id
                            AND (k.wa_id = pg_catalog.ltrim(_wa_enqueue_target.recipient, '+')
                                 OR k.user_id = _wa_enqueue_target.recipient)
                          -- (two contacts match when a customer's phone and BSUID were seen apart)
                          ORDER BY k.last_inbound_at DESC NULLS LAST
                          LIMIT 1) k ON true
      LEFT JOIN LATERAL (SELECT g.group_id, g.last_inbound_at FROM @extschema@.wa_groups g
                          WHERE _wa_enqueue_target.to_group
                            AND g.channel_id = c.id AND g.group_id = _wa_enqueue_target.recipient
                            AND g.status = 'active') g ON true
     WHERE c.name = _wa_enqueue_target.channel AND c.enabled
       AND (NOT _wa_enqueue_target.to_group OR g.group_id IS NOT NULL)
       AND (_wa_enqueue_target.p_type IN ('template', 'mark_read') OR c.allow_outside_window
            OR k.last_inbound_at >= pg_catalog.now() - interval '24 hours'
            OR g.last_inbound_at >= pg_catalog.now() - interval '24 hours');
END;

-- The message a channel already has for an idempotency key (see wa_messages.idempotency_key).
CREATE FUNCTION _wa_message_by_key(channel text, idempotency_key text) RETURNS bigint
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT m.id FROM @extschema@.wa_messages m
     WHERE m.channel_id = (SELECT c.id FROM @extschema@.wa_channels c WHERE c.name = _wa_message_by_key.channel)
       AND m.idempotency_key = _wa_message_by_key.idempotency_key;
END;

-- Queues one outbound message after the checks every kind shares, in the caller's
-- transaction, and wakes the delivery worker at commit. `recipient` is already normalised
-- ('+E.164', a BSUID or a group id); `request` is the Graph API body (recipient_type "group"
-- for a group). With an `idempotency_key` the channel already has a message for, that
-- message's id is returned and nothing is queued. Past `expires_at` a message still queued
-- fails as expired instead of being sent late.
CREATE FUNCTION _wa_enqueue(channel text, recipient text, p_type text, p_body text, request jsonb,
                            idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    msg_id   bigint;
    sends    boolean;
    to_group boolean := COALESCE(request ->> 'recipient_type' = 'group', false);
    ch       @extschema@.wa_channels;
    contact  @extschema@.wa_contacts;
    grp      @extschema@.wa_groups;
    last_in  timestamptz;
BEGIN
    IF expires_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'expires_at % is not in the future', expires_at
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the time after which the message is no longer worth sending, e.g. now() + interval ''10 minutes''.';
    END IF;
    IF idempotency_key IS NOT NULL THEN
        msg_id := @extschema@._wa_message_by_key(channel, idempotency_key);
        IF msg_id IS NOT NULL THEN
            RETURN msg_id;
        END IF;
        -- Callers with the same key wait here for each other: the second one sees the first's
        -- message once it commits (read committed), or queues its own if the first rolled
        -- back. (The unique index wa_messages_idempotency_key is what guarantees one row.)
        -- (A hash collision only makes two callers wait for each other.)
        PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(channel), pg_catalog.hashtext(idempotency_key));
        msg_id := @extschema@._wa_message_by_key(channel, idempotency_key);
        IF msg_id IS NOT NULL THEN
            RETURN msg_id;
        END IF;
    END IF;
    -- One statement on the way in (the channel, the customer's 24-hour window and the row);
    -- only when it inserts nothing are the rules checked one by one, to say which one refused.
    IF p_type = 'text' THEN
        -- Text, most of what an inbox sends, has one derived column (the message it replies
        -- to): the other twenty of _wa_message_columns() are NULL for it, and computing them
        -- cost a tenth of an enqueue (measured).
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload,
                                              next_attempt_at, idempotency_key, expires_at, reply_to_wamid, voice, forwarded, frequently_forwarded)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body, 'queued', recipient, request, pg_catalog.now(),
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, request -> 'context' ->> 'message_id', false, false, false
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group) t
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    ELSE
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload, next_attempt_at,
                                              idempotency_key, expires_at, media_id, media_mime_type, media_sha256, media_filename,
                                              voice, latitude, longitude, location_name, location_address,
                                              reply_to_wamid, forwarded, frequently_forwarded, referral,
                                              reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                              button_payload, order_items, shared_contacts, system_type,
                                              original_wamid)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body, 'queued', recipient, request, pg_catalog.now(),
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, d.*
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group) t
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
    IF to_group THEN
        SELECT * INTO grp FROM @extschema@.wa_groups g WHERE g.channel_id = ch.id AND g.group_id = recipient;
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a group of channel %', recipient, pg_catalog.quote_literal(channel)
                USING ERRCODE = 'undefined_object',
                      HINT = 'A group is known from its webhooks (subscribe the app to group_lifecycle_update) or its first message; see SELECT group_id, subject FROM wa_groups. A phone number needs its country code.';
        END IF;
        IF grp.status <> 'active' THEN
            RAISE EXCEPTION 'group % of channel % is %', recipient, pg_catalog.quote_literal(channel), pg_catalog.replace(grp.status, '_', ' ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = CASE grp.status WHEN 'suspended' THEN 'Meta suspended it; messages can be sent again once it clears the suspension (group_suspend_cleared).'
                                             ELSE 'Only an active group can be sent to; see wa_groups.last_event for what Meta said.' END;
        END IF;
        last_in := grp.last_inbound_at;
    ELSE
        SELECT * INTO contact FROM @extschema@.wa_contacts k
         WHERE k.channel_id = ch.id AND (k.wa_id = pg_catalog.ltrim(recipient, '+') OR k.user_id = recipient)
         ORDER BY k.last_inbound_at DESC NULLS LAST
         LIMIT 1;
        last_in := contact.last_inbound_at;
    END IF;
    IF p_type IN ('template', 'mark_read') OR ch.allow_outside_window
       OR last_in >= pg_catalog.now() - interval '24 hours' THEN
        -- The channel was enabled, the switch turned on or the customer wrote since the INSERT
        -- looked (a concurrent transaction): nothing refuses the message now, so the caller
        -- only needs to try again.
        RAISE EXCEPTION 'channel % changed while the message was being queued', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'serialization_failure', HINT = 'Try again.';
    END IF;
    RAISE EXCEPTION 'the 24-hour customer-service window with % is closed: %', CASE WHEN to_group THEN 'group ' ELSE '' END || recipient,
        CASE WHEN last_in IS NULL THEN CASE WHEN to_group THEN 'nobody has written in it' ELSE 'they have not written to channel ' || pg_catalog.quote_literal(channel) END
             ELSE 'the last message from ' || CASE WHEN to_group THEN 'a participant' ELSE 'them' END || ' was at ' || last_in::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Only an approved template can (re)open the conversation: use wa_send_template(). '
                  || 'To send anyway, UPDATE wa_channels SET allow_outside_window = true.';
END
$$;

-- The send functions are PL/pgSQL rather than SQL: Postgres 15 plans the body of a SQL function
-- that cannot be inlined on every call (a third of the cost of an enqueue, measured), while
-- PL/pgSQL keeps its plans for the session.
CREATE FUNCTION wa_send_text(channel text, recipient text, body text, reply_to text DEFAULT NULL, preview_url boolean DEFAULT false,
                             idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'text', body, @extschema@._wa_text_request(to_, body, reply_to, preview_url),
                                   idempotency_key, expires_at);
END
$$;

CREATE FUNCTION wa_send_media(channel text, recipient text, kind text, link_or_media_id text,
                              caption text DEFAULT NULL, filename text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                              expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, kind, caption,
                                   @extschema@._wa_media_request(to_, kind, link_or_media_id, caption, filename), idempotency_key,
                                   expires_at);
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
    problem  text;
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
    problem := @extschema@._wa_named_body_parameter_problem(t.components, components);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'template % (%) %', pg_catalog.quote_literal(p_name), p_language, problem
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Its body: ' || COALESCE((SELECT c ->> 'text' FROM pg_catalog.jsonb_array_elements(t.components) c
                                                    WHERE pg_catalog.upper(c ->> 'type') = 'BODY' LIMIT 1), '(none)')
                      || '. Give each name once: components => ''[{"type":"body","parameters":[{"type":"text","parameter_name":"<name>","text":"..."}, ...]}]''.';
    END IF;
    problem := @extschema@._wa_template_header_button_problem(t.components, components);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'template % (%) %', pg_catalog.quote_literal(p_name), p_language, problem
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Its header and buttons: ' || COALESCE((SELECT pg_catalog.string_agg(c::text, ' ') FROM pg_catalog.jsonb_array_elements(t.components) c
                                                                  WHERE pg_catalog.upper(c ->> 'type') IN ('HEADER', 'BUTTONS')), '(none)')
                      || '. Meta refuses a send without them (error 132000).';
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

CREATE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_       text := @extschema@.wa_normalize_recipient(recipient);
    request   jsonb;
    category  text;
    marketing boolean;
    auth_ttl  interval;
    msg_id    bigint;
BEGIN
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    request := @extschema@._wa_template_request(to_, name, language, components);
    -- The template's category, as wa_sync_templates() and template webhooks left it (NULL when
    -- the channel's templates were never synced).
    SELECT pg_catalog.upper(t.category), c.marketing_messages, c.authentication_template_ttl INTO category, marketing, auth_ttl
      FROM @extschema@.wa_channels c
      LEFT JOIN @extschema@.wa_templates t ON t.channel_id = c.id AND t.name = wa_send_template.name AND t.language = wa_send_template.language
     WHERE c.name = channel;
    IF request ->> 'recipient_type' = 'group' AND category = 'AUTHENTICATION' THEN
        RAISE EXCEPTION 'template % (%) is an authentication template: Meta''s Groups API does not send those to groups', pg_catalog.quote_literal(name), language
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Send one-time codes to each person with wa_send_template(channel, ''<their number>'', ...).';
    END IF;
    -- A one-time code is worth nothing late: the channel's authentication_template_ttl applies.
    IF category = 'AUTHENTICATION' AND expires_at IS NULL THEN
        expires_at := pg_catalog.now() + auth_ttl;
    END IF;
    msg_id := @extschema@._wa_enqueue(channel, to_, 'template', name, request, idempotency_key, expires_at);
    -- A marketing template of a channel onboarded to the Marketing Messages API goes through it.
    IF marketing AND category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        UPDATE @extschema@.wa_messages m SET graph_endpoint = 'marketing_messages' WHERE m.id = msg_id;
    END IF;
    RETURN msg_id;
END
$$;

CREATE FUNCTION wa_send_interactive(channel text, recipient text, interactive jsonb, idempotency_key text DEFAULT NULL,
                                    expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', interactive #>> '{body,text}',
                                   @extschema@._wa_interactive_request(to_, interactive), idempotency_key, expires_at);
END
$$;

CREATE FUNCTION wa_send_location(channel text, recipient text, latitude double precision, longitude double precision,
                                 name text DEFAULT NULL, address text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'location', name,
                                   @extschema@._wa_location_request(to_, latitude, longitude, name, address), idempotency_key,
                                   expires_at);
END
$$;

-- The customer a message of this channel was exchanged with (who receives a reaction or a
-- read receipt about it), as '+E.164' or BSUID. A message of a group is refused: Meta's Groups
-- API has neither reactions nor read receipts.
CREATE FUNCTION _wa_counterpart(channel text, message_wamid text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who text;
    grp text;
BEGIN
    SELECT CASE WHEN m.direction = 'outbound' THEN m.recipient
                ELSE COALESCE('+' || k.wa_id, k.user_id) END,
           m.group_id
      INTO who, grp
      FROM @extschema@.wa_messages m
      JOIN @extschema@.wa_channels c ON c.id = m.channel_id
      LEFT JOIN @extschema@.wa_contacts k ON k.id = m.contact_id
     WHERE c.name = channel AND m.wamid = message_wamid;
    IF grp IS NOT NULL THEN
        RAISE EXCEPTION 'message % is in group %: Meta''s Groups API does not support reactions or read receipts in groups', message_wamid, grp
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'A group takes text, media and templates only; its unread count clears when you write to it.';
    END IF;
    IF who IS NULL THEN
        RAISE EXCEPTION 'no message % in channel %', message_wamid, pg_catalog.quote_literal(channel)
            USING ERRCODE = 'no_data_found', HINT = 'Pass the wamid of a message of this channel (wa_messages.wamid).';
    END IF;
    RETURN who;
END
$$;

-- Reacts to a message with an emoji; an empty emoji removes the reaction.
CREATE FUNCTION wa_send_reaction(channel text, message_wamid text, emoji text, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@._wa_counterpart(channel, message_wamid);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'reaction', emoji, @extschema@._wa_reaction_request(to_, message_wamid, emoji),
                                   idempotency_key, expires_at);
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
    ELSIF NEW.group_id IS NOT NULL THEN
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, group_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        VALUES (NEW.channel_id, NEW.group_id, NEW.id, NEW.created_at, 'outbound', NEW.type, pg_catalog.left(NEW.body, 200), 0)
        ON CONFLICT (channel_id, group_id) WHERE group_id IS NOT NULL DO UPDATE
           SET unread_count = 0,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END;
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

-- (History from a coexistence number is in the past: _wa_receive_history places it itself.
-- A row whose created_at is not this transaction's is not new either: it is a restore
-- (pg_restore, psql of a plain dump) copying back a message whose conversation row is restored
-- with it; moving that conversation again would zero its unread count or collide with it.)
CREATE CONSTRAINT TRIGGER wa_messages_outbound_conversation AFTER INSERT ON wa_messages
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.direction = 'outbound' AND (NEW.contact_id IS NOT NULL OR NEW.group_id IS NOT NULL) AND NOT NEW.from_history
                       AND NEW.created_at = pg_catalog.now())
    EXECUTE FUNCTION _wa_outbound_conversation();

-- ---------------------------------------------------------------------------------------------
-- Store procedures for the delivery worker
--
-- A message is found by its primary key, and its status is then compared as `status || ''`:
-- compared plainly, `status = 'sending'` lets the planner prove that the partial index
-- wa_messages_outbox (status IN ('queued', 'sending')) applies, and on statistics that say the
-- queue is empty (a burst fills it faster than it is analyzed) it reads that whole index for
-- every message recorded: measured, 1.3 ms per _wa_mark_sent behind a 10,000-message queue.

-- Claims the messages due now, at most one per recipient (the oldest queued one), so that
-- messages to one customer go out in the order they were queued.
-- The oldest message of a customer's queue that is not done yet (queued or in flight): the only
-- one of theirs that may be sent, so that they receive messages in the order they were queued.
-- A function so that _wa_queue_heads can say it in one place; the planner inlines it. It must
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

-- What is due, the one rule for the claim and _wa_next_due_in: a channel's queued messages that
-- head their customer's queue (none of a customer while one of theirs is in flight). Callers
-- order it by next_attempt_at and stop at their LIMIT; the planner inlines it, so that this is
-- still a read of wa_messages_due in due order that ends there (see _wa_claim_due).
CREATE FUNCTION _wa_queue_heads(channel bigint) RETURNS TABLE (id bigint, next_attempt_at timestamptz)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT m.id, m.next_attempt_at
      FROM @extschema@.wa_messages m
     CROSS JOIN LATERAL @extschema@._wa_queue_head(m.channel_id, m.recipient) head
     WHERE m.channel_id = _wa_queue_heads.channel AND m.status = 'queued' AND head.id = m.id;
END;

CREATE FUNCTION _wa_claim_due(max_messages integer, default_version text, budgets jsonb)
RETURNS TABLE (id bigint, channel_id bigint, max_per_second integer, attempts integer, phone_number_id text,
               graph_api_version text, access_token text, request text, recipient text, kind text, endpoint text,
               probe boolean, expired boolean)
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
    -- disabled channels are not read at all, nor is an unreachable one (see
    -- wa_channels.unreachable_since) until its next probe, which is one message; a channel's
    -- queue is read in due order (wa_messages_due) only until its budget is found: a long
    -- queue costs nothing per claim.
    SELECT pg_catalog.array_agg(d.id) INTO chosen
      FROM (SELECT m.id
              FROM @extschema@.wa_channels c
             CROSS JOIN LATERAL (
                    SELECT m.id, m.next_attempt_at
                      FROM @extschema@._wa_queue_heads(c.id) m
                     WHERE m.next_attempt_at <= pg_catalog.now()
                     ORDER BY m.next_attempt_at
                     -- (The channel's own rate too: the worker's budget is from before a change
                     -- of it. least() skips the NULL budget of a channel the worker has not seen.)
                     LIMIT least(max_messages, c.max_messages_per_second, (budgets ->> c.id::text)::integer,
                                 CASE WHEN c.unreachable_since IS NOT NULL THEN 1 END)
                   ) m
             WHERE c.enabled AND c.paused_at IS NULL AND (c.next_probe_at IS NULL OR c.next_probe_at <= pg_catalog.now())
             ORDER BY m.next_attempt_at
             LIMIT max_messages) d;
    -- By primary key: the claim must not become a join the planner could get wrong. (The
    -- status is compared as `status || ''` so that the planner cannot prove the partial index
    -- wa_messages_due applies: on statistics that say the queue is empty it read that whole
    -- index for every claim instead, 8,000 entries for 145 messages, measured on a full table.)
    RETURN QUERY
    UPDATE @extschema@.wa_messages m
       SET status = 'sending', attempts = m.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE m.id = ANY (chosen) AND m.status || '' = 'queued' AND c.id = m.channel_id AND s.channel_id = c.id
    RETURNING m.id, m.channel_id, c.max_messages_per_second, m.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token, m.payload::text, m.recipient, m.type,
              m.graph_endpoint, c.unreachable_since IS NOT NULL, COALESCE(m.expires_at <= pg_catalog.now(), false);
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
     WHERE m.id = msg_id AND m.status || '' = 'sending';
END;

-- The Graph API has answered nothing but transport errors and 5xx for this channel since
-- `since`: its queue waits, one message probing every `probe_in` seconds (see _wa_claim_due).
CREATE FUNCTION _wa_channel_unreachable(channel bigint, since timestamptz, probe_in double precision) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_channels c
       SET unreachable_since = COALESCE(c.unreachable_since, since),
           next_probe_at = pg_catalog.now() + pg_catalog.make_interval(secs => probe_in)
     WHERE c.id = channel;
END;

-- The Graph API answered again: the channel's whole queue is due at once, in queue order (each
-- customer's oldest message first), instead of each message waiting out its backoff.
CREATE FUNCTION _wa_channel_reachable(channel bigint) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_channels c SET unreachable_since = NULL, next_probe_at = NULL
     WHERE c.id = channel AND c.unreachable_since IS NOT NULL;
    UPDATE @extschema@.wa_messages m SET next_attempt_at = pg_catalog.now()
     WHERE m.channel_id = channel AND m.status = 'queued' AND m.next_attempt_at > pg_catalog.now();
END;

-- Claimed messages past their expires_at fail instead of being sent late, with the reason.
CREATE FUNCTION _wa_expire(msg_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH expired AS (
        UPDATE @extschema@.wa_messages x
           SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL, error_code = NULL,
               error_title = 'expired at ' || x.expires_at::text || ' before it could be sent: not sent late (expires_at)',
               error_details = NULL, error_hint = NULL, updated_at = pg_catalog.now()
         WHERE x.id = ANY (msg_ids) AND x.status || '' = 'sending'
        RETURNING x.id)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', e.id, 'wamid', NULL, 'status', 'failed')::text))
      FROM (SELECT expired.id FROM expired ORDER BY expired.id) e
$$;

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
     WHERE x.id = msg_id AND x.status || '' = 'sending'
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
        -- (an unreachable channel's queue is due at its next probe at the soonest)
        (SELECT pg_catalog.min(greatest(h.next_attempt_at, c.next_probe_at))
           FROM @extschema@.wa_channels c
          CROSS JOIN LATERAL (
                SELECT m.next_attempt_at FROM @extschema@._wa_queue_heads(c.id) m
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

-- After a crash (or a shutdown) between claiming and recording, claimed messages go back to
-- the queue, but not at once: Meta may have accepted them, and then a status that carries the
-- message's outbox id (biz_opaque_callback_data) arrives and records the send instead (see
-- _wa_receive_statuses). Only what heard nothing for `resend_after` seconds is sent again
-- (whatsapp_channel.resend_interrupted_after; README, "Delivery guarantees"). The rest of each
-- customer's queue waits behind it, in order.
CREATE FUNCTION _wa_requeue_interrupted(resend_after double precision) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        UPDATE @extschema@.wa_messages m
           SET status = 'queued', updated_at = pg_catalog.now(),
               next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => resend_after)
         WHERE m.status = 'sending' RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM r
$$;

-- Records the sends Meta accepted: each message 'sending' -> 'sent' with its wamid, notified on
-- wa_status, and any statuses that arrived before the wamid was known applied. Set-based: the
-- delivery worker records a whole turn's accepted sends in one call (one statement each
-- instead of five per message); _wa_mark_sent is the same for one.
CREATE FUNCTION _wa_mark_sent_all(msg_ids bigint[], p_wamids text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
AS $$
DECLARE
    sent_channels bigint[];
    sent_wamids   text[];
BEGIN
    -- Serialises with _wa_receive_statuses for the same wamids, in the same (bytewise wamid)
    -- order, so the two never deadlock and no early status is missed by both.
    PERFORM pg_catalog.count(pg_catalog.pg_advisory_xact_lock(k.lock))
       FROM (SELECT @extschema@._wa_wamid_lock(x.channel_id, u.w) AS lock
               FROM unnest(msg_ids, p_wamids) AS u(id, w)
               JOIN @extschema@.wa_messages x ON x.id = u.id
              WHERE u.w IS NOT NULL
              ORDER BY u.w COLLATE "C", x.channel_id OFFSET 0) k;
    WITH sent AS (
        UPDATE @extschema@.wa_messages x
           SET status = 'sent', wamid = u.w, sent_at = pg_catalog.now(), next_attempt_at = NULL,
               error_code = NULL, error_title = NULL, error_details = NULL, error_hint = NULL,
               updated_at = pg_catalog.now()
          FROM unnest(msg_ids, p_wamids) AS u(id, w)
         WHERE x.id = u.id AND x.status || '' = 'sending'
        RETURNING x.id, x.channel_id, u.w
    ), notified AS (
        SELECT sent.channel_id, sent.w,
               pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', sent.id, 'wamid', sent.w, 'status', 'sent')::text)
          FROM sent ORDER BY sent.id
    )
    -- Statuses that arrived before these wamids were known (usually none: one probe each).
    SELECT pg_catalog.array_agg(n.channel_id), pg_catalog.array_agg(n.w) INTO sent_channels, sent_wamids
      FROM notified n
     WHERE n.w IS NOT NULL
       AND EXISTS (SELECT 1 FROM @extschema@.wa_message_statuses h WHERE h.channel_id = n.channel_id AND h.wamid = n.w);
    IF sent_wamids IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_statuses(sent_channels, sent_wamids);
    END IF;
END
$$;

CREATE FUNCTION _wa_mark_sent(msg_id bigint, p_wamid text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT @extschema@._wa_mark_sent_all(ARRAY[msg_id], ARRAY[p_wamid]);
END;

CREATE FUNCTION _wa_mark_failed(msg_id bigint, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL,
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status || '' = 'sending';
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
     WHERE x.id = msg_id AND x.status || '' = 'sending'
    RETURNING * INTO m;
    IF FOUND THEN
        PERFORM @extschema@._wa_hold_behind(m.channel_id, m.recipient, m.id, m.next_attempt_at);
    END IF;
END
$$;
