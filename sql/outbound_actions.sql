-- whatsapp_channel: the action outbox: Graph API calls that are not messages (block and unblock
-- users, act on a call, create and delete templates, manage groups). The SQL API queues an action in the
-- caller's transaction and wakes the delivery worker at COMMIT; the worker claims it (committed
-- as 'sending'), performs it on a sender thread, and records Meta's answer in a transaction of
-- its own, as it does a message (src/outbound/actions.rs). No backend waits on HTTP: a function
-- returns the action's id, and its end is notified on wa_action (README, "Actions").
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- ---------------------------------------------------------------------------------------------
-- API

-- Queues one action of a channel the caller may act on (checked by the caller), and wakes the
-- delivery worker at COMMIT for actions.
CREATE FUNCTION _wa_enqueue_action(channel_id bigint, kind @extschema@.wa_action_kind, target text, request jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    action_id bigint;
BEGIN
    INSERT INTO @extschema@.wa_actions (channel_id, kind, target, request, created_by)
    VALUES (_wa_enqueue_action.channel_id, _wa_enqueue_action.kind, _wa_enqueue_action.target, _wa_enqueue_action.request,
            @extschema@._wa_caller())
    RETURNING id INTO action_id;
    PERFORM @extschema@._wa_wake_actions();
    RETURN action_id;
END
$$;

-- Blocks customers (Meta's Block Users API): they can no longer write to the business, nor the
-- business to them. Meta only blocks customers who wrote in the last 24 hours; its answer is
-- per customer, and wa_contacts.blocked_at is set for those it confirms.
CREATE FUNCTION wa_block(channel text, recipients text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'block', NULL, @extschema@._wa_block_request(
        ARRAY(SELECT @extschema@.wa_normalize_recipient(r) FROM unnest(recipients) r)));
END
$$;

-- Unblocks customers; wa_contacts.blocked_at is cleared for those Meta confirms.
CREATE FUNCTION wa_unblock(channel text, recipients text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'unblock', NULL, @extschema@._wa_block_request(
        ARRAY(SELECT @extschema@.wa_normalize_recipient(r) FROM unnest(recipients) r)));
END
$$;

-- Acts on a call of the channel (Meta's Calling API): pre_accept and accept with the SDP answer
-- to the offer of its connect event, reject, terminate. Actions on one call are performed in
-- the order they were queued.
CREATE FUNCTION wa_call_action(channel text, call_id text, action @extschema@.wa_call_action, sdp text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    IF NOT EXISTS (SELECT FROM @extschema@.wa_calls c WHERE c.channel_id = ch AND c.call_id = wa_call_action.call_id) THEN
        RAISE EXCEPTION '% is not a call of channel %', pg_catalog.quote_literal(call_id), pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object',
                  HINT = 'A call is known from its connect webhook (subscribe the app to the calls field); see SELECT call_id, status FROM wa_calls.';
    END IF;
    RETURN @extschema@._wa_enqueue_action(ch, 'call', call_id, @extschema@._wa_call_action_request(call_id, action::text, sdp));
END
$$;

-- Asks a customer for permission to call them: Meta's interactive call_permission_request, a
-- message (it has a wamid and statuses, and the customer's answer comes back as an inbound
-- interactive call_permission_reply), so it is queued as one, in the customer's order and
-- within their 24-hour window (outside it, use a template with a call permission button).
CREATE FUNCTION wa_request_call_permission(channel text, recipient text, body text DEFAULT NULL,
                                           idempotency_key text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', body, @extschema@._wa_interactive_request(to_,
        pg_catalog.jsonb_build_object('type', 'call_permission_request', 'action', pg_catalog.jsonb_build_object('name', 'call_permission_request'))
        || CASE WHEN body IS NOT NULL THEN pg_catalog.jsonb_build_object('body', pg_catalog.jsonb_build_object('text', body)) ELSE '{}' END,
        NULL), idempotency_key);
END
$$;

-- The business account a template action of the channel goes to, or an error that says where
-- to find it.
CREATE FUNCTION _wa_channel_waba(ch bigint) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    waba text;
    ch_name text;
BEGIN
    SELECT c.waba_id, c.name INTO waba, ch_name FROM @extschema@.wa_channels c WHERE c.id = ch;
    IF waba IS NULL THEN
        RAISE EXCEPTION 'channel % has no WhatsApp Business Account id', pg_catalog.quote_literal(ch_name)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Set it: UPDATE wa_channels SET waba_id = ''<id from Meta''''s WhatsApp Manager>'' WHERE name = %L.', ch_name);
    END IF;
    RETURN waba;
END
$$;

-- Submits a template for Meta's review. Once Meta answers, wa_templates has it as PENDING (with
-- Meta's id) until the status webhook says APPROVED or REJECTED.
CREATE FUNCTION wa_create_template(channel text, name text, language text, category text, components jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'admin');
BEGIN
    PERFORM @extschema@._wa_channel_waba(ch);
    RETURN @extschema@._wa_enqueue_action(ch, 'create_template', name,
                                          @extschema@._wa_create_template_request(name, language, category, components));
END
$$;

-- Deletes a template, every language of the name (Meta deletes by name). Once Meta confirms,
-- its rows leave wa_templates (a deleted template cannot be sent; its name cannot be reused for
-- 30 days, Meta's rule).
CREATE FUNCTION wa_delete_template(channel text, name text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'admin');
BEGIN
    PERFORM @extschema@._wa_channel_waba(ch);
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'no template name given' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the name of a template, e.g. SELECT DISTINCT name FROM wa_templates.';
    END IF;
    RETURN @extschema@._wa_enqueue_action(ch, 'delete_template', name, NULL);
END
$$;

-- The group of the channel an action acts on, or an error that says where groups are known from.
CREATE FUNCTION _wa_require_group(ch bigint, channel text, group_id text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM @extschema@.wa_groups g WHERE g.channel_id = ch AND g.group_id = _wa_require_group.group_id) THEN
        RAISE EXCEPTION '% is not a group of channel %', pg_catalog.quote_nullable(group_id), pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object',
                  HINT = 'A group is known from its group_create webhook (after wa_create_group(); subscribe the app to group_lifecycle_update) or its first message; see SELECT group_id, subject FROM wa_groups.';
    END IF;
    RETURN group_id;
END
$$;

-- Creates a group (Meta's Groups API): its subject and description; with
-- join_approval_required, opening its invite link makes a join request to approve or reject.
-- Meta answers with a request id (the action's result ->> 'request_id') and creates the group
-- after: its group_create webhook adds it to wa_groups with its id, its invite link and
-- create_request_id, that request id.
CREATE FUNCTION wa_create_group(channel text, subject text, description text DEFAULT NULL,
                                join_approval_required boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'create_group', pg_catalog.btrim(subject),
                                          @extschema@._wa_create_group_request(subject, description, join_approval_required));
END
$$;

-- Asks Meta for a group's invite link; once Meta answers, it is wa_groups.invite_link.
CREATE FUNCTION wa_get_group_invite_link(channel text, group_id text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'get_group_invite_link', @extschema@._wa_require_group(ch, channel, group_id), NULL);
END
$$;

-- Replaces a group's invite link: the old one stops working, and the new one is
-- wa_groups.invite_link once Meta answers.
CREATE FUNCTION wa_reset_group_invite_link(channel text, group_id text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'reset_group_invite_link', @extschema@._wa_require_group(ch, channel, group_id),
                                          @extschema@._wa_reset_group_invite_link_request());
END
$$;

-- Reads a group's open join requests into wa_group_join_requests.
CREATE FUNCTION wa_list_group_join_requests(channel text, group_id text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'list_group_join_requests', @extschema@._wa_require_group(ch, channel, group_id), NULL);
END
$$;

-- Lets the askers of join requests into the group. Meta answers per request, as for a block:
-- those it approves leave wa_group_join_requests (and join wa_groups.participants with the
-- group_participants_update webhook), those it could not are in the result with their errors.
CREATE FUNCTION wa_approve_group_join_requests(channel text, group_id text, join_request_ids text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'approve_group_join_requests', @extschema@._wa_require_group(ch, channel, group_id),
                                          @extschema@._wa_group_join_requests_request(join_request_ids));
END
$$;

-- Refuses join requests, the same way.
CREATE FUNCTION wa_reject_group_join_requests(channel text, group_id text, join_request_ids text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'reject_group_join_requests', @extschema@._wa_require_group(ch, channel, group_id),
                                          @extschema@._wa_group_join_requests_request(join_request_ids));
END
$$;

-- Removes participants (phone numbers or BSUIDs, at most 8) from a group; they leave
-- wa_groups.participants with Meta's group_participants_remove webhook.
CREATE FUNCTION wa_remove_group_participants(channel text, group_id text, participants text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'remove_group_participants', @extschema@._wa_require_group(ch, channel, group_id),
        @extschema@._wa_remove_group_participants_request(
            ARRAY(SELECT @extschema@.wa_normalize_recipient(p) FROM unnest(participants) p)));
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Store procedures for the delivery worker

-- Claims up to `max_actions` due actions of channels that send, at most the oldest pending one
-- per channel and target (a call's pre_accept before its accept; a block before an unblock),
-- committed as 'sending' by the caller's transaction.
CREATE FUNCTION _wa_claim_actions(max_actions integer, default_version text)
RETURNS TABLE (id bigint, channel_id bigint, kind text, target text, request text, attempts integer,
               phone_number_id text, waba_id text, graph_api_version text, access_token text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE @extschema@.wa_actions a
       SET status = 'sending', attempts = a.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE a.id IN (SELECT d.id FROM @extschema@.wa_actions d
                      JOIN @extschema@.wa_channels dc ON dc.id = d.channel_id
                     WHERE d.status = 'queued' AND d.next_attempt_at <= pg_catalog.now()
                       AND dc.enabled AND dc.paused_at IS NULL
                       AND NOT EXISTS (SELECT FROM @extschema@.wa_actions p
                                        WHERE p.channel_id = d.channel_id AND p.status IN ('queued', 'sending')
                                          AND COALESCE(p.target, '') = COALESCE(d.target, '') AND p.id < d.id)
                     ORDER BY d.next_attempt_at
                     LIMIT max_actions)
       AND a.status || '' = 'queued' AND c.id = a.channel_id AND s.channel_id = c.id
    RETURNING a.id, a.channel_id, a.kind::text, a.target, a.request::text, a.attempts, c.phone_number_id, c.waba_id,
              COALESCE(c.graph_api_version, default_version), s.access_token
$$;

-- Seconds until the next queued action of a channel that sends falls due (negative: overdue,
-- the worker counts it as now); NULL when none is. (Not greatest(0, ...): greatest() ignores a
-- NULL, so "none queued" became 0, due now, and the worker read wa_actions at every turn: 0.8 ms
-- of its main thread per turn, measured at 200 commits/s.)
CREATE FUNCTION _wa_next_action_due_in() RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT extract(epoch FROM pg_catalog.min(a.next_attempt_at) - pg_catalog.now())::double precision
      FROM @extschema@.wa_actions a JOIN @extschema@.wa_channels c ON c.id = a.channel_id
     WHERE a.status = 'queued' AND c.enabled AND c.paused_at IS NULL
$$;

-- After a crash (or a shutdown) between claiming and recording, claimed actions are due again
-- at once: Meta echoes nothing of an action that could tell it was done (README, "Actions").
CREATE FUNCTION _wa_requeue_interrupted_actions() RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        UPDATE @extschema@.wa_actions a SET status = 'queued', next_attempt_at = pg_catalog.now(), updated_at = pg_catalog.now()
         WHERE a.status = 'sending' RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM r
$$;

-- Notifies wa_action that an action ended.
CREATE FUNCTION _wa_notify_action(a @extschema@.wa_actions) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT pg_catalog.pg_notify('wa_action', pg_catalog.json_build_object('id', a.id, 'channel_id', a.channel_id)::text);
END;

-- Records an action Meta did (`result`: its answer; for a block with some users failed, or
-- join requests some of which failed, the summary error too), and what it changes here:
-- blocked_at of the customers Meta blocked or unblocked, the template created (PENDING) or
-- deleted, a group's invite link, its open join requests. (A group's creation changes nothing
-- yet: its group_create webhook brings the group.)
CREATE FUNCTION _wa_action_done(action_id bigint, result jsonb, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a @extschema@.wa_actions;
    u jsonb;
BEGIN
    UPDATE @extschema@.wa_actions x
       SET status = 'done', result = _wa_action_done.result, next_attempt_at = NULL, done_at = pg_catalog.now(),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = action_id AND x.status || '' = 'sending'
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF a.kind IN ('block', 'unblock') THEN
        FOR u IN SELECT * FROM pg_catalog.jsonb_array_elements(
                    COALESCE(result -> CASE a.kind WHEN 'block' THEN 'added_users' ELSE 'removed_users' END, '[]')) LOOP
            IF a.kind = 'block' AND u ->> 'wa_id' IS NOT NULL THEN
                -- (a customer not known yet becomes a contact, so that the block is kept)
                INSERT INTO @extschema@.wa_contacts AS k (channel_id, wa_id, blocked_at) VALUES (a.channel_id, u ->> 'wa_id', pg_catalog.now())
                ON CONFLICT (channel_id, wa_id) WHERE wa_id IS NOT NULL DO UPDATE SET blocked_at = pg_catalog.now(), updated_at = pg_catalog.now();
            END IF;
            UPDATE @extschema@.wa_contacts k
               SET blocked_at = CASE a.kind WHEN 'block' THEN pg_catalog.now() END, updated_at = pg_catalog.now()
             WHERE k.channel_id = a.channel_id
               AND (k.wa_id = COALESCE(u ->> 'wa_id', pg_catalog.ltrim(u ->> 'input', '+')) OR k.user_id = u ->> 'input')
               AND (k.blocked_at IS NULL) = (a.kind = 'block');
        END LOOP;
    ELSIF a.kind = 'create_template' THEN
        INSERT INTO @extschema@.wa_templates AS t (channel_id, name, language, status, category, components, template_id)
        VALUES (a.channel_id, a.target, a.request ->> 'language', COALESCE(result ->> 'status', 'PENDING'),
                COALESCE(result ->> 'category', a.request ->> 'category'), a.request -> 'components', result ->> 'id')
        ON CONFLICT (channel_id, name, language) DO UPDATE
           SET status = excluded.status, category = excluded.category, components = excluded.components,
               template_id = excluded.template_id, reason = NULL, status_at = NULL, updated_at = pg_catalog.now()
         -- (a status webhook about this very template that came first is newer: kept)
         WHERE t.template_id IS DISTINCT FROM excluded.template_id OR t.status_at IS NULL;
    ELSIF a.kind = 'delete_template' THEN
        DELETE FROM @extschema@.wa_templates t WHERE t.channel_id = a.channel_id AND t.name = a.target;
    ELSIF a.kind IN ('get_group_invite_link', 'reset_group_invite_link') THEN
        UPDATE @extschema@.wa_groups g SET invite_link = result ->> 'invite_link', updated_at = pg_catalog.now()
         WHERE g.channel_id = a.channel_id AND g.group_id = a.target AND g.invite_link IS DISTINCT FROM result ->> 'invite_link';
        IF FOUND THEN
            PERFORM pg_catalog.pg_notify('wa_group', pg_catalog.json_build_object('channel_id', a.channel_id)::text);
        END IF;
    ELSIF a.kind = 'list_group_join_requests' THEN
        -- (the group may have been deleted since the listing was queued: then nothing is kept)
        INSERT INTO @extschema@.wa_group_join_requests AS j (channel_id, group_id, join_request_id, wa_id, requested_at)
        SELECT a.channel_id, a.target, r ->> 'join_request_id', r ->> 'wa_id',
               @extschema@._wa_unix_time((r ->> 'creation_timestamp')::double precision)
          FROM pg_catalog.jsonb_array_elements(result -> 'data') r
         WHERE r ->> 'join_request_id' IS NOT NULL
           AND EXISTS (SELECT FROM @extschema@.wa_groups g WHERE g.channel_id = a.channel_id AND g.group_id = a.target)
        ON CONFLICT (channel_id, group_id, join_request_id) DO UPDATE
           SET wa_id = excluded.wa_id, requested_at = excluded.requested_at, listed_at = pg_catalog.now();
        -- Meta lists the open ones: one it no longer lists was withdrawn or decided elsewhere. A
        -- listing with more pages (paging.next) is only added to.
        IF result #> '{paging,next}' IS NULL THEN
            DELETE FROM @extschema@.wa_group_join_requests j
             WHERE j.channel_id = a.channel_id AND j.group_id = a.target
               AND j.join_request_id NOT IN (SELECT r ->> 'join_request_id' FROM pg_catalog.jsonb_array_elements(result -> 'data') r
                                              WHERE r ->> 'join_request_id' IS NOT NULL);
        END IF;
    ELSIF a.kind IN ('approve_group_join_requests', 'reject_group_join_requests') THEN
        DELETE FROM @extschema@.wa_group_join_requests j
         WHERE j.channel_id = a.channel_id AND j.group_id = a.target
           AND j.join_request_id IN (SELECT pg_catalog.jsonb_array_elements_text(COALESCE(
                   result -> CASE a.kind WHEN 'approve_group_join_requests' THEN 'approved_join_requests' ELSE 'rejected_join_requests' END,
                   '[]')));
    END IF;
    PERFORM @extschema@._wa_notify_action(a);
END
$$;

-- Records an action Meta refused for good, or given up on, with the reason and a hint.
CREATE FUNCTION _wa_action_failed(action_id bigint, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a @extschema@.wa_actions;
BEGIN
    UPDATE @extschema@.wa_actions x
       SET status = 'failed', next_attempt_at = NULL, done_at = pg_catalog.now(),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = action_id AND x.status || '' = 'sending'
    RETURNING * INTO a;
    IF FOUND THEN
        PERFORM @extschema@._wa_notify_action(a);
    END IF;
END
$$;

-- Puts an action back in the queue for its next attempt, after `delay_seconds`.
CREATE FUNCTION _wa_action_retry(action_id bigint, delay_seconds double precision, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.wa_actions x
       SET status = 'queued', next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => delay_seconds),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = action_id AND x.status || '' = 'sending';
END
$$;
