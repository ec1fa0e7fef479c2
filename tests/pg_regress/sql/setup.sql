-- Runs first (tests/pg_regress/run.sh, as `cargo pgrx regress` would): the extension, and
-- what the other files share. Each file then makes its own channels and leaves nothing behind
-- that another one reads.
CREATE EXTENSION whatsapp_channel;
SELECT extversion FROM pg_extension WHERE extname = 'whatsapp_channel';

-- An inbound webhook as the listener would have stored it (the exact envelope Meta POSTs,
-- field `messages` unless told), for wa_replay_webhook_events() to process: the workers do
-- not run here, and replay takes the same path as a live POST. Returns the event's id.
CREATE FUNCTION regress_webhook(channel text, value jsonb, field text DEFAULT 'messages') RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO wa_webhook_events (channel_id, body, outcome)
    SELECT c.id,
           convert_to(jsonb_build_object(
               'object', 'whatsapp_business_account',
               'entry', jsonb_build_array(jsonb_build_object(
                   'id', '102290129340398',
                   'changes', jsonb_build_array(jsonb_build_object(
                       'field', field,
                       'value', value || jsonb_build_object(
                           'messaging_product', 'whatsapp',
                           'metadata', jsonb_build_object('display_phone_number', '15550783881',
                                                          'phone_number_id', c.phone_number_id)))))))::text, 'UTF8'),
           'stored'
      FROM wa_channels c WHERE c.name = channel
    RETURNING id
$$;

-- A customer's text message (Meta's epoch-seconds timestamp `at`), stored by a replay of its
-- webhook: the contact, the message and the conversation, as if it had just been POSTed.
CREATE FUNCTION regress_customer_writes(channel text, wa_id text, wamid text, body text,
                                        at timestamptz DEFAULT now(), name text DEFAULT 'Customer')
RETURNS TABLE (events bigint, new_messages bigint, new_statuses bigint)
LANGUAGE sql AS $$
    SELECT r.* FROM wa_replay_webhook_events(
        regress_webhook(channel, jsonb_build_object(
            'contacts', jsonb_build_array(jsonb_build_object('profile', jsonb_build_object('name', name), 'wa_id', wa_id)),
            'messages', jsonb_build_array(jsonb_build_object(
                'from', wa_id, 'id', wamid, 'timestamp', extract(epoch FROM at)::bigint::text,
                'type', 'text', 'text', jsonb_build_object('body', body))))),
        NULL) r
$$;

-- A channel with valid credentials of the given name and Phone Number ID (waba_id too).
CREATE FUNCTION regress_channel(name text, phone_number_id text) RETURNS void
LANGUAGE sql AS $$
    SELECT wa_add_channel(name, phone_number_id, 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef',
                          'verify-me', '1' || phone_number_id)
$$;

-- The roles of README, "Roles": an inbox app with exactly the grants given there, and a
-- role with none (what PUBLIC may do).
CREATE ROLE regress_inbox;
CREATE ROLE regress_nobody;
GRANT SELECT ON wa_channels, wa_contacts, wa_messages, wa_message_statuses, wa_conversations, wa_conversation_state,
                wa_message_costs, wa_calls, wa_channel_health, wa_channel_counters, wa_webhook_events, wa_templates,
                wa_groups, wa_channel_access, wa_channel_grants, wa_channel_events, wa_call_events, wa_actions,
                wa_group_join_requests TO regress_inbox;
GRANT EXECUTE ON FUNCTION wa_send_text(text, text, text, text, boolean, text, timestamptz, timestamptz),
                          wa_send_media(text, text, text, text, text, text, text, timestamptz, text, timestamptz),
                          wa_send_template(text, text, text, text, jsonb, text, timestamptz, text, timestamptz),
                          wa_send_interactive(text, text, jsonb, text, timestamptz, text, timestamptz),
                          wa_send_location(text, text, double precision, double precision, text, text, text, timestamptz, text, timestamptz),
                          wa_send_contacts(text, text, jsonb, text, text, timestamptz, timestamptz),
                          wa_send_reaction(text, text, text, text, timestamptz, timestamptz),
                          wa_cancel_message(bigint),
                          wa_retry_message(bigint),
                          wa_mark_read(text, text, boolean),
                          wa_media_content(bigint),
                          wa_upload_media(text, bytea, text, text),
                          wa_block(text, text[]), wa_unblock(text, text[]),
                          wa_call_action(text, text, wa_call_action, text),
                          wa_request_call_permission(text, text, text, text),
                          wa_create_group(text, text, text, boolean),
                          wa_get_group_invite_link(text, text), wa_reset_group_invite_link(text, text),
                          wa_list_group_join_requests(text, text),
                          wa_approve_group_join_requests(text, text, text[]), wa_reject_group_join_requests(text, text, text[]),
                          wa_remove_group_participants(text, text, text[]) TO regress_inbox;
-- The test helpers are the test's, not the extension's: anyone may call them.
GRANT EXECUTE ON FUNCTION regress_webhook(text, jsonb, text) TO PUBLIC;

-- On these fresh tables, without statistics yet: the listener's lookup of a sender by WhatsApp
-- id and by BSUID, as _wa_receive_messages plans it once and keeps it (a generic plan, no
-- hash or merge joins), uses each id's own index with both columns. (With two unique keys over
-- every row it read the BSUID index by channel alone for a lookup by wa_id, and so every
-- contact of the channel for each message, until the first ANALYZE.)
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off;
PREPARE sender_lookup(bigint[], text[], text[]) AS
SELECT ARRAY(SELECT COALESCE((SELECT k.id FROM wa_contacts k WHERE k.channel_id = u.ch AND k.wa_id = u.wa),
                             (SELECT k.id FROM wa_contacts k WHERE k.channel_id = u.ch AND k.user_id = u.uid))
               FROM unnest($1, $2, $3) AS u(ch, wa, uid));
-- (The scans only: the rest of EXPLAIN's text differs between PostgreSQL 15 and 18.)
CREATE FUNCTION pg_temp.scans(statement text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || statement LOOP
        IF line ~ '(Scan|Index Cond|Filter)' THEN
            RETURN NEXT btrim(line, ' ->');
        END IF;
    END LOOP;
END
$$;
SELECT * FROM pg_temp.scans($$EXECUTE sender_lookup('{1}', '{15551234567}', '{US.1}')$$);
DEALLOCATE sender_lookup;
COMMIT;
