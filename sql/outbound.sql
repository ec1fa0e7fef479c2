-- whatsapp_channel: the outbound path: the send functions of the SQL API and the enqueue (the
-- delivery worker's store procedures are in sql/outbound_delivery.sql).
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- ---------------------------------------------------------------------------------------------
-- API

-- The channel a message may be queued on, and the customer or group it goes to: no row when
-- the channel is unknown or disabled, when a group is not an active group of the channel, or
-- when the customer's (or the group's) 24-hour window is closed to this type of message (Meta
-- accepts free-form messages only within 24 hours of the customer's last message; outside it
-- they fail later with 131047: refused here, where the caller can act), or when the customer is
-- blocked (wa_block(): Meta would refuse the send). The window is judged at `at`, when the
-- message is to go out (now, or its send_at). The planner inlines it into _wa_enqueue's
-- INSERTs; for a 1:1 message the group's lookup is a one-time `false`.
CREATE FUNCTION _wa_enqueue_target(channel text, recipient text, p_type text, to_group boolean, at timestamptz)
RETURNS TABLE (channel_id bigint, contact_id bigint, group_id text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.id, k.id, g.group_id
      FROM @extschema@.wa_channels c
      LEFT JOIN LATERAL (SELECT k.id, k.last_inbound_at, k.blocked_at FROM @extschema@.wa_contacts k
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
       AND (k.blocked_at IS NULL OR _wa_enqueue_target.p_type = 'mark_read')
       AND (_wa_enqueue_target.p_type IN ('template', 'mark_read') OR c.allow_outside_window
            OR k.last_inbound_at >= _wa_enqueue_target.at - interval '24 hours'
            OR g.last_inbound_at >= _wa_enqueue_target.at - interval '24 hours');
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
-- fails as expired instead of being sent late. With a future `send_at` the message is
-- 'scheduled': it waits outside the queue (it holds up none of the customer's other messages)
-- until the delivery worker releases it at that time (_wa_release_scheduled); its 24-hour
-- window is judged at send_at, here and again then. A NULL or past send_at queues it now.
CREATE FUNCTION _wa_enqueue(channel text, recipient text, p_type text, p_body text, request jsonb,
                            idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                            send_at timestamptz DEFAULT NULL) RETURNS bigint
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
    -- When it goes out: now, or its send_at (greatest() ignores a NULL).
    due      timestamptz := greatest(pg_catalog.now(), send_at);
BEGIN
    IF expires_at <= due THEN
        RAISE EXCEPTION 'expires_at % is not %', expires_at, CASE WHEN due > pg_catalog.now() THEN 'after send_at ' || due::text ELSE 'in the future' END
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
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body,
               CASE WHEN due > pg_catalog.now() THEN 'scheduled' ELSE 'queued' END, recipient, request, due,
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, request -> 'context' ->> 'message_id', false, false, false
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group, due) t
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
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body,
               CASE WHEN due > pg_catalog.now() THEN 'scheduled' ELSE 'queued' END, recipient, request, due,
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, d.*
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group, due) t
         CROSS JOIN LATERAL @extschema@._wa_message_columns(p_type, request) d
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    END IF;
    IF msg_id IS NOT NULL THEN
        -- A paused channel's queue waits for wa_set_access_token() (or any change to the
        -- channel, see wa_channels_wake): no need to wake the worker for it. (A scheduled
        -- message wakes it too: it may fall due before what the worker sleeps until.)
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
        IF contact.blocked_at IS NOT NULL AND p_type <> 'mark_read' THEN
            RAISE EXCEPTION '% is blocked on channel % (since %): Meta refuses messages to a blocked customer', recipient,
                pg_catalog.quote_literal(channel), contact.blocked_at
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = pg_catalog.format('Unblock them first: SELECT wa_unblock(%L, ARRAY[%L]).', channel, recipient);
        END IF;
        last_in := contact.last_inbound_at;
    END IF;
    IF p_type IN ('template', 'mark_read') OR ch.allow_outside_window
       OR last_in >= due - interval '24 hours' THEN
        -- The channel was enabled, the switch turned on or the customer wrote since the INSERT
        -- looked (a concurrent transaction): nothing refuses the message now, so the caller
        -- only needs to try again.
        RAISE EXCEPTION 'channel % changed while the message was being queued', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'serialization_failure', HINT = 'Try again.';
    END IF;
    RAISE EXCEPTION 'the 24-hour customer-service window with % %: %', CASE WHEN to_group THEN 'group ' ELSE '' END || recipient,
        CASE WHEN due > pg_catalog.now() THEN 'will be closed at send_at ' || due::text ELSE 'is closed' END,
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
-- Every wa_send_* but wa_send_reaction takes `reply_to` (the wamid of the message it quotes: Meta's
-- context, on every kind but reactions) and every one `send_at` (see _wa_enqueue), as their last
-- parameters, so that calls by position written for earlier versions keep their meaning.
CREATE FUNCTION wa_send_text(channel text, recipient text, body text, reply_to text DEFAULT NULL, preview_url boolean DEFAULT false,
                             idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'text', body, @extschema@._wa_text_request(to_, body, reply_to, preview_url),
                                   idempotency_key, expires_at, send_at);
END
$$;

CREATE FUNCTION wa_send_media(channel text, recipient text, kind text, link_or_media_id text,
                              caption text DEFAULT NULL, filename text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                              expires_at timestamptz DEFAULT NULL, reply_to text DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, kind, caption,
                                   @extschema@._wa_media_request(to_, kind, link_or_media_id, caption, filename, reply_to), idempotency_key,
                                   expires_at, send_at);
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
                  HINT = 'Its body is "' || COALESCE((SELECT c ->> 'text' FROM pg_catalog.jsonb_array_elements(t.components) c
                                                    WHERE pg_catalog.upper(c ->> 'type') = 'BODY' LIMIT 1), '(none)')
                      || '"; give each name once: components => ''[{"type":"body","parameters":[{"type":"text","parameter_name":"<name>","text":"..."}, ...]}]''.';
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
                  HINT = 'Its body is "' || COALESCE((SELECT c ->> 'text' FROM pg_catalog.jsonb_array_elements(t.components) c
                                                    WHERE pg_catalog.upper(c ->> 'type') = 'BODY' LIMIT 1), '(none)')
                      || '"; pass components => ''[{"type":"body","parameters":[{"type":"text","text":"..."}, ...]}]''.';
    END IF;
END
$$;

-- Refuses a template whose state Meta's template webhooks changed so that sending it now would
-- fail or cost what the sender did not choose: paused (low quality: Meta resumes it after a
-- few hours), disabled, or recategorised with the change in effect (until wa_sync_templates()
-- reads it again, which acknowledges the new category and its price). Kept apart from the
-- other checks of wa_send_template so that each refusal is one small function.
CREATE FUNCTION _wa_check_template_state(channel text, p_name text, p_language text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.wa_templates;
BEGIN
    SELECT x.* INTO t FROM @extschema@.wa_templates x JOIN @extschema@.wa_channels c ON c.id = x.channel_id
     WHERE c.name = channel AND x.name = p_name AND x.language = p_language;
    IF NOT FOUND THEN
        RETURN; -- _wa_check_template says what is wrong with a template this channel does not know
    END IF;
    IF t.status IN ('PAUSED', 'DISABLED') THEN
        RAISE EXCEPTION 'template % (%) is % by Meta%', pg_catalog.quote_literal(p_name), p_language, t.status,
                        COALESCE(' since ' || t.status_at::text, '')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = COALESCE('Meta''s reason: ' || t.reason || '. ', '')
                      || CASE t.status WHEN 'PAUSED' THEN 'Meta pauses a template whose quality dropped and resumes it by itself (3 hours the first time, 6 the second); '
                                                          || 'a status webhook APPROVED lifts this refusal. Improve or replace the template in WhatsApp Manager.'
                         ELSE 'A disabled template cannot be sent again: create a new one in WhatsApp Manager and wa_sync_templates(' || pg_catalog.quote_literal(channel) || ').' END;
    END IF;
    IF t.previous_category IS NOT NULL AND t.previous_category IS DISTINCT FROM t.category AND t.category_changes_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'template % (%) was recategorised by Meta from % to % on %', pg_catalog.quote_literal(p_name), p_language,
                        t.previous_category, t.category, t.category_changes_at
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Meta now sends and charges it as ' || t.category || '. If that is acceptable, run wa_sync_templates('
                      || pg_catalog.quote_literal(channel) || ') and send again; otherwise edit the template in WhatsApp Manager.';
    END IF;
END
$$;

CREATE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL, reply_to text DEFAULT NULL,
                                 send_at timestamptz DEFAULT NULL)
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
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    PERFORM @extschema@._wa_check_template_state(channel, name, language);
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    request := @extschema@._wa_template_request(to_, name, language, components, reply_to);
    -- The template's category, as wa_sync_templates() and template webhooks left it (NULL when
    -- the channel's templates were never synced).
    SELECT pg_catalog.upper(t.category), c.marketing_messages, c.authentication_template_ttl INTO category, marketing, auth_ttl
      FROM @extschema@.wa_channels c
      LEFT JOIN @extschema@.wa_templates t ON t.channel_id = c.id AND t.name = wa_send_template.name AND t.language = wa_send_template.language
     WHERE c.name = channel;
    IF category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        PERFORM @extschema@._wa_refuse_marketing_opt_out(channel, to_, name);
    END IF;
    IF request ->> 'recipient_type' = 'group' AND category = 'AUTHENTICATION' THEN
        RAISE EXCEPTION 'template % (%) is an authentication template: Meta''s Groups API does not send those to groups', pg_catalog.quote_literal(name), language
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Send one-time codes to each person with wa_send_template(channel, ''<their number>'', ...).';
    END IF;
    -- A one-time code is worth nothing late: the channel's authentication_template_ttl applies
    -- (from its send_at when it is scheduled).
    IF category = 'AUTHENTICATION' AND expires_at IS NULL THEN
        expires_at := greatest(pg_catalog.now(), send_at) + auth_ttl;
    END IF;
    msg_id := @extschema@._wa_enqueue(channel, to_, 'template', name, request, idempotency_key, expires_at, send_at);
    -- A marketing template of a channel onboarded to the Marketing Messages API goes through it.
    IF marketing AND category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        UPDATE @extschema@.wa_messages m SET graph_endpoint = 'marketing_messages' WHERE m.id = msg_id;
    END IF;
    RETURN msg_id;
END
$$;

CREATE FUNCTION wa_send_interactive(channel text, recipient text, interactive jsonb, idempotency_key text DEFAULT NULL,
                                    expires_at timestamptz DEFAULT NULL, reply_to text DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', interactive #>> '{body,text}',
                                   @extschema@._wa_interactive_request(to_, interactive, reply_to), idempotency_key, expires_at, send_at);
END
$$;

CREATE FUNCTION wa_send_location(channel text, recipient text, latitude double precision, longitude double precision,
                                 name text DEFAULT NULL, address text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL, reply_to text DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'location', name,
                                   @extschema@._wa_location_request(to_, latitude, longitude, name, address, reply_to), idempotency_key,
                                   expires_at, send_at);
END
$$;

-- Contact cards (Meta's contact objects, checked by whatsapp_cloud::graph_api::contacts); the
-- message's body is their formatted names, for the conversation's preview.
CREATE FUNCTION wa_send_contacts(channel text, recipient text, contacts jsonb, reply_to text DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                                 send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_     text := @extschema@.wa_normalize_recipient(recipient);
    request jsonb;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    request := @extschema@._wa_contacts_request(to_, contacts, reply_to);
    RETURN @extschema@._wa_enqueue(channel, to_, 'contacts',
                                   (SELECT pg_catalog.string_agg(c #>> '{name,formatted_name}', ', ') FROM pg_catalog.jsonb_array_elements(contacts) c),
                                   request, idempotency_key, expires_at, send_at);
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
    IF who IS NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_channels c WHERE c.name = channel) THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
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
                                 expires_at timestamptz DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    to_ := @extschema@._wa_counterpart(channel, message_wamid);
    RETURN @extschema@._wa_enqueue(channel, to_, 'reaction', emoji, @extschema@._wa_reaction_request(to_, message_wamid, emoji),
                                   idempotency_key, expires_at, send_at);
END
$$;

-- Marks a received message (and those before it) as read, with a typing indicator if asked.
CREATE FUNCTION wa_mark_read(channel text, message_wamid text, typing boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    to_ := @extschema@._wa_counterpart(channel, message_wamid);
    RETURN @extschema@._wa_enqueue(channel, to_, 'mark_read', NULL, @extschema@._wa_mark_read_request(message_wamid, typing));
END
$$;

-- Whether a message of type `p_type` may go out at `at` to its customer (or group): the rule of
-- _wa_enqueue_target (which keeps its own copy, inlined into the enqueue), for a message that
-- waited: a scheduled one when it falls due, a failed one when it is retried.
CREATE FUNCTION _wa_window_open(channel bigint, contact bigint, grp text, p_type text, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT _wa_window_open.p_type IN ('template', 'mark_read') OR c.allow_outside_window
           OR COALESCE((SELECT k.last_inbound_at FROM @extschema@.wa_contacts k WHERE k.id = _wa_window_open.contact)
                       >= _wa_window_open.at - interval '24 hours', false)
           OR COALESCE((SELECT g.last_inbound_at FROM @extschema@.wa_groups g
                         WHERE g.channel_id = c.id AND g.group_id = _wa_window_open.grp)
                       >= _wa_window_open.at - interval '24 hours', false)
      FROM @extschema@.wa_channels c WHERE c.id = _wa_window_open.channel;
END;

-- The outbound message `msg_id`, locked, if the caller may send on its channel. An id that does
-- not exist, an inbound message's and one of a channel the caller may not send on get the same
-- error, so that nobody learns which ids other tenants' messages have.
CREATE FUNCTION _wa_sendable_message(msg_id bigint) RETURNS @extschema@.wa_messages
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    channel text;
    m       @extschema@.wa_messages;
BEGIN
    SELECT c.name INTO channel
      FROM @extschema@.wa_messages x JOIN @extschema@.wa_channels c ON c.id = x.channel_id
     WHERE x.id = msg_id AND x.direction = 'outbound';
    IF channel IS NOT NULL THEN
        BEGIN
            PERFORM @extschema@._wa_require_channel(channel, 'send');
        EXCEPTION WHEN insufficient_privilege THEN
            channel := NULL;
        END;
    END IF;
    IF channel IS NULL THEN
        RAISE EXCEPTION 'no outbound message % on a channel you may send on', COALESCE(msg_id::text, 'NULL')
            USING ERRCODE = 'no_data_found',
                  HINT = 'Pass the id a wa_send_* function returned (wa_messages.id) for a channel you have the send privilege on.';
    END IF;
    SELECT * INTO m FROM @extschema@.wa_messages x WHERE x.id = msg_id FOR UPDATE;
    RETURN m;
END
$$;

-- Cancels a message that has not gone out yet (queued or scheduled): it will not be sent. One in
-- flight, already sent or failed cannot be cancelled (WhatsApp cannot unsend it; a sent
-- message can only be answered). Notified on wa_status.
CREATE FUNCTION wa_cancel_message(id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages := @extschema@._wa_sendable_message(wa_cancel_message.id);
BEGIN
    IF m.status NOT IN ('queued', 'scheduled') THEN
        RAISE EXCEPTION 'message % cannot be cancelled: it %', m.id,
              CASE m.status WHEN 'sending' THEN 'is being sent to Meta now'
                            WHEN 'failed' THEN 'failed' || COALESCE(': ' || m.error_title, '')
                            WHEN 'cancelled' THEN 'was already cancelled at ' || m.updated_at::text
                            ELSE 'was already sent (' || m.status || ')' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE m.status WHEN 'sending' THEN 'Meta answers within seconds; a sent message can no longer be cancelled.'
                                       WHEN 'failed' THEN 'A failed message is not sent; wa_retry_message() would send it again.'
                                       WHEN 'cancelled' THEN 'Nothing to do: it will not be sent.'
                                       ELSE 'Only a queued or scheduled message can be cancelled.' END;
    END IF;
    UPDATE @extschema@.wa_messages x SET status = 'cancelled', next_attempt_at = NULL, updated_at = pg_catalog.now()
     WHERE x.id = m.id;
    -- The customer's later messages that waited behind this one (_wa_hold_behind) need not.
    IF m.status = 'queued' THEN
        UPDATE @extschema@.wa_messages x SET next_attempt_at = pg_catalog.now()
         WHERE x.channel_id = m.channel_id AND x.recipient = m.recipient AND x.status = 'queued'
           AND x.id > m.id AND x.attempts = 0 AND x.next_attempt_at > pg_catalog.now();
    END IF;
    PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', m.id, 'channel_id', m.channel_id)::text);
    PERFORM @extschema@._wa_wake_delivery();
END
$$;

-- Sends a failed message again, as a new delivery of the same message (same id, with the full
-- budget of automatic retries again): back in the queue at its place in the customer's order, which is its id: it
-- goes out before any of their messages queued after it that are still waiting (the queue head
-- is the oldest message not done, see _wa_queue_head, so nothing later is claimed, nor needs
-- holding with _wa_hold_behind, until it is done); what already went out, or is in flight,
-- stays before it (WhatsApp cannot unsend). The last attempt's wamid and times are cleared
-- (its statuses stay in wa_message_statuses); its error stays until the new attempt's outcome,
-- as for an automatic retry. Refused when it expired, its customer is blocked or its 24-hour
-- window is closed.
CREATE FUNCTION wa_retry_message(id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages := @extschema@._wa_sendable_message(wa_retry_message.id);
BEGIN
    IF m.status <> 'failed' THEN
        RAISE EXCEPTION 'message % cannot be retried: it is %, not failed', m.id, m.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE WHEN m.status IN ('queued', 'scheduled', 'sending') THEN 'It has not failed: the delivery worker sends it (and retries it) by itself.'
                              WHEN m.status = 'cancelled' THEN 'A cancelled message stays cancelled: send a new one.'
                              ELSE 'Only a failed message can be retried.' END;
    END IF;
    IF m.expires_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'message % cannot be retried: it expired at %', m.id, m.expires_at
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Its sender did not want it sent after that (expires_at): send a new message if it is still worth sending.';
    END IF;
    IF m.type <> 'mark_read' AND EXISTS (SELECT FROM @extschema@.wa_contacts k WHERE k.id = m.contact_id AND k.blocked_at IS NOT NULL) THEN
        RAISE EXCEPTION 'message % cannot be retried: % is blocked (wa_block)', m.id, m.recipient
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Meta refuses messages to a blocked customer: unblock them first with wa_unblock().';
    END IF;
    IF NOT @extschema@._wa_window_open(m.channel_id, m.contact_id, m.group_id, m.type, pg_catalog.now()) THEN
        RAISE EXCEPTION 'message % cannot be retried: the 24-hour customer-service window with % is closed', m.id, m.recipient
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only an approved template can (re)open the conversation: use wa_send_template(); retry once they write again.';
    END IF;
    UPDATE @extschema@.wa_messages x
       SET status = 'queued', attempts = 0, next_attempt_at = pg_catalog.now(), failed_at = NULL, wamid = NULL,
           sent_at = NULL, delivered_at = NULL, read_at = NULL, updated_at = pg_catalog.now()
     WHERE x.id = m.id;
    PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', m.id, 'channel_id', m.channel_id)::text);
    PERFORM @extschema@._wa_wake_delivery();
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
