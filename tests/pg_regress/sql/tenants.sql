-- Tenancy (README, "Roles"): two tenants, each a channel with a customer, a photo, a group, a
-- call and its event, a queued action, a status, a template, a counter, a former BSUID and a raw
-- webhook, and each an agent role granted `send` on its own channel. The test walks the
-- catalog, so that a table, view or function added later cannot be missed: tenant A's agent
-- reads nothing of tenant B, sends on nothing of B, learns nothing of B from an error; the owner
-- sees both.
\set SHOW_CONTEXT never
SET client_min_messages = error;
SELECT regress_channel('tenant_a', '200101'), regress_channel('tenant_b', '200102');
UPDATE wa_channels SET allow_outside_window = true WHERE name IN ('tenant_a', 'tenant_b');

CREATE FUNCTION regress_tenant_rows(channel text, tag text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ch bigint := (SELECT id FROM wa_channels WHERE name = channel);
BEGIN
    PERFORM regress_customer_writes(channel, '1555000' || tag, 'wamid.' || tag || '.text', 'Hello from ' || channel);
    PERFORM wa_replay_webhook_events(regress_webhook(channel, jsonb_build_object(
        'contacts', jsonb_build_array(jsonb_build_object('profile', jsonb_build_object('name', 'Customer'), 'wa_id', '1555000' || tag)),
        'messages', jsonb_build_array(
            jsonb_build_object('from', '1555000' || tag, 'id', 'wamid.' || tag || '.photo', 'timestamp', extract(epoch FROM now())::bigint::text,
                               'type', 'image', 'image', jsonb_build_object('id', 'media' || tag, 'mime_type', 'image/png')),
            jsonb_build_object('from', '1555000' || tag, 'id', 'wamid.' || tag || '.group', 'timestamp', extract(epoch FROM now())::bigint::text,
                               'group_id', 'group' || tag, 'type', 'text', 'text', jsonb_build_object('body', 'Hi all'))))));
    UPDATE wa_media SET status = 'done', content = convert_to('photo of ' || channel, 'UTF8') WHERE channel_id = ch;
    INSERT INTO wa_groups (channel_id, group_id, subject, status) VALUES (ch, 'group' || tag, 'Group of ' || channel, 'active')
    ON CONFLICT (channel_id, group_id) DO UPDATE SET subject = excluded.subject, status = 'active';
    INSERT INTO wa_group_join_requests (channel_id, group_id, join_request_id, wa_id) VALUES (ch, 'group' || tag, 'join' || tag, '1555777' || tag);
    INSERT INTO wa_calls (channel_id, call_id, status, payload) VALUES (ch, 'wacid.' || tag, 'ringing', '{}');
    INSERT INTO wa_call_events (channel_id, call_id, event, event_at, payload) VALUES (ch, 'wacid.' || tag, 'connect', now(), '{}');
    PERFORM wa_block(channel, ARRAY['1555999' || tag]);
    INSERT INTO wa_message_statuses (channel_id, wamid, status, payload, pricing_category, pricing_type)
    VALUES (ch, 'wamid.' || tag || '.out', 'delivered', '{}', 'service', 'free_customer_service');
    INSERT INTO wa_channel_counters (channel_id, kind, count, last_at) VALUES (ch, 'stored', 1, now());
    INSERT INTO wa_templates (channel_id, name, language, status, category) VALUES (ch, 'hello_' || tag, 'en', 'APPROVED', 'UTILITY');
    INSERT INTO wa_channel_events (channel_id, kind, field, event_at, summary, payload)
    VALUES (ch, 'account_update', 'account_update', now(), 'ACCOUNT_VIOLATION: violation ADULT', '{}');
    INSERT INTO wa_contact_former_ids (channel_id, user_id, contact_id)
    SELECT ch, 'US.former.' || tag, k.id FROM wa_contacts k WHERE k.channel_id = ch LIMIT 1;
    PERFORM wa_send_text(channel, '1555000' || tag, 'queued on ' || channel);
END
$$;
SELECT regress_tenant_rows('tenant_a', '0001'), regress_tenant_rows('tenant_b', '0002');
SELECT id AS ch_a FROM wa_channels WHERE name = 'tenant_a' \gset
SELECT id AS ch_b FROM wa_channels WHERE name = 'tenant_b' \gset
SELECT id AS photo_b FROM wa_messages WHERE wamid = 'wamid.0002.photo' \gset
SELECT id AS photo_a FROM wa_messages WHERE wamid = 'wamid.0001.photo' \gset
SELECT id AS queued_b FROM wa_messages WHERE body = 'queued on tenant_b' \gset

-- The agents: the README's grants through a group role, then each its own channel.
CREATE ROLE regress_agent_a IN ROLE regress_inbox;
CREATE ROLE regress_agent_b IN ROLE regress_inbox;
SELECT wa_grant_channel('tenant_a', 'regress_agent_a'), wa_grant_channel('tenant_b', 'regress_agent_b', 'send');

-- The policies work in a parallel plan (the session's first, so the policies' helper looks
-- up what it keeps inside it, in parallel mode, where a read-write SPI call fails), in the
-- workers (which ask for the channels themselves: the policy is evaluated per row) as in the
-- leader: the agent counts exactly its channel's messages.
SELECT count(*) AS messages_a FROM wa_messages WHERE channel_id = :ch_a \gset
BEGIN;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL parallel_leader_participation = off;
SET LOCAL ROLE regress_agent_a;
SELECT count(*) > 0 AS agent_counts_in_parallel, count(*) = :messages_a AS only_its_channel FROM wa_messages;
COMMIT;

-- For every table and view of the extension: the rows of each channel, as the owner and as
-- each agent (a relation an agent may not read at all shows NULL for it). A relation without
-- a channel column is listed, so that it is looked at.
CREATE FUNCTION regress_rows_by_channel(rel regclass, ch bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    col text := (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = rel AND a.attname IN ('channel_id', 'id')
                  ORDER BY a.attname = 'channel_id' DESC LIMIT 1);
    n bigint;
BEGIN
    IF NOT has_table_privilege(rel, 'SELECT') THEN
        RETURN NULL;
    ELSIF rel = 'wa_metrics'::regclass THEN
        EXECUTE 'SELECT count(*) FROM wa_metrics WHERE labels ->> ''channel'' = (SELECT name FROM wa_channels WHERE id = $1)' INTO n USING ch;
    ELSIF rel = 'wa_channels'::regclass OR col = 'channel_id' THEN
        EXECUTE format('SELECT count(*) FROM %s WHERE %I = $1', rel, CASE WHEN rel = 'wa_channels'::regclass THEN 'id' ELSE 'channel_id' END) INTO n USING ch;
    ELSE
        RETURN -1; -- no channel column
    END IF;
    RETURN n;
END
$$;
GRANT EXECUTE ON FUNCTION regress_rows_by_channel(regclass, bigint) TO PUBLIC;
CREATE TEMP TABLE seen (relation text, who text, rows_a bigint, rows_b bigint);
GRANT ALL ON seen TO PUBLIC;
INSERT INTO seen
SELECT c.oid::regclass::text, 'owner', regress_rows_by_channel(c.oid, :ch_a), regress_rows_by_channel(c.oid, :ch_b)
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind IN ('r', 'v')
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'whatsapp_channel');
SET ROLE regress_agent_a;
INSERT INTO seen SELECT s.relation, 'agent_a', regress_rows_by_channel(s.relation::regclass, :ch_a), regress_rows_by_channel(s.relation::regclass, :ch_b)
  FROM seen s WHERE s.who = 'owner';
SET ROLE regress_agent_b;
INSERT INTO seen SELECT s.relation, 'agent_b', regress_rows_by_channel(s.relation::regclass, :ch_a), regress_rows_by_channel(s.relation::regclass, :ch_b)
  FROM seen s WHERE s.who = 'owner';
RESET ROLE;
-- The owner sees both channels' rows; an agent, the rows of its own channel and none of the
-- other's. (NULL: the README's grants do not include the relation. wa_metrics has no samples
-- here: no worker runs without shared_preload_libraries.)
SELECT o.relation, o.rows_a > 0 AS owner_a, o.rows_b > 0 AS owner_b,
       a.rows_a = o.rows_a AS agent_a_all_of_a, a.rows_b AS agent_a_rows_of_b,
       b.rows_b = o.rows_b AS agent_b_all_of_b, b.rows_a AS agent_b_rows_of_a
  FROM seen o JOIN seen a ON a.relation = o.relation AND a.who = 'agent_a' JOIN seen b ON b.relation = o.relation AND b.who = 'agent_b'
 WHERE o.who = 'owner' ORDER BY o.relation;

-- Every function agent A may call, called about tenant B's channel and about a channel that
-- does not exist: refused with 42501 before anything else, with the same message, and nothing
-- written. (The list of calls is checked against the catalog below: a new function that an
-- agent may call must be added here.)
CREATE TEMP TABLE calls (function text, call text);
GRANT ALL ON calls TO PUBLIC;
INSERT INTO calls VALUES
    ('wa_send_text', $$SELECT wa_send_text(%L, '15550000002', 'from A')$$),
    ('wa_send_media', $$SELECT wa_send_media(%L, '15550000002', 'image', 'https://example.com/a.png')$$),
    ('wa_send_template', $$SELECT wa_send_template(%L, '15550000002', 'hello_0002', 'en')$$),
    ('wa_send_interactive', $$SELECT wa_send_interactive(%L, '15550000002', '{"type": "button", "body": {"text": "?"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}')$$),
    ('wa_send_location', $$SELECT wa_send_location(%L, '15550000002', 1, 2)$$),
    ('wa_send_reaction', $$SELECT wa_send_reaction(%L, 'wamid.0002.text', '👍')$$),
    ('wa_send_contacts', $$SELECT wa_send_contacts(%L, '15550000002', '[{"name": {"formatted_name": "Ann Lee", "first_name": "Ann"}}]')$$),
    ('wa_mark_read', $$SELECT wa_mark_read(%L, 'wamid.0002.text')$$),
    ('wa_upload_media', $$SELECT wa_upload_media(%L, '\x89504e47'::bytea, 'image/png')$$),
    ('wa_block', $$SELECT wa_block(%L, ARRAY['15550000002'])$$),
    ('wa_unblock', $$SELECT wa_unblock(%L, ARRAY['15550000002'])$$),
    ('wa_call_action', $$SELECT wa_call_action(%L, 'wacid.0002', 'reject')$$),
    ('wa_request_call_permission', $$SELECT wa_request_call_permission(%L, '15550000002')$$),
    ('wa_create_group', $$SELECT wa_create_group(%L, 'A group of A')$$),
    ('wa_get_group_invite_link', $$SELECT wa_get_group_invite_link(%L, 'group0002')$$),
    ('wa_reset_group_invite_link', $$SELECT wa_reset_group_invite_link(%L, 'group0002')$$),
    ('wa_list_group_join_requests', $$SELECT wa_list_group_join_requests(%L, 'group0002')$$),
    ('wa_approve_group_join_requests', $$SELECT wa_approve_group_join_requests(%L, 'group0002', ARRAY['join0002'])$$),
    ('wa_reject_group_join_requests', $$SELECT wa_reject_group_join_requests(%L, 'group0002', ARRAY['join0002'])$$),
    ('wa_remove_group_participants', $$SELECT wa_remove_group_participants(%L, 'group0002', ARRAY['+15550000002'])$$);
SELECT p.proname AS callable_by_agent_not_tried
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'whatsapp_channel')
   AND has_function_privilege('regress_agent_a', p.oid, 'EXECUTE')
   AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
   AND p.proname NOT IN (SELECT function FROM calls)
   AND p.proname NOT IN ('wa_media_content', 'wa_cancel_message', 'wa_retry_message') -- (by id: tried below)
 ORDER BY 1;
CREATE FUNCTION regress_refusal(call text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE call;
    RETURN 'not refused';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION regress_refusal(text) TO PUBLIC;
SELECT count(*) AS messages_before FROM wa_messages \gset
SET ROLE regress_agent_a;
SELECT function,
       regress_refusal(format(call, 'tenant_b')) AS about_b,
       replace(regress_refusal(format(call, 'tenant_x')), 'tenant_x', 'tenant_b') = regress_refusal(format(call, 'tenant_b')) AS same_as_no_channel
  FROM calls ORDER BY function;
-- The functions that take a message id: tenant B's queued message gets the same refusal as an
-- id that does not exist (nothing tells A that it exists), and stays queued.
SELECT f AS by_id,
       replace(regress_refusal(format('SELECT %s(%s)', f, :queued_b)), :'queued_b', 'N') AS about_b_message,
       replace(regress_refusal(format('SELECT %s(%s)', f, :queued_b)), :'queued_b', 'N')
       = replace(regress_refusal(format('SELECT %s(%s)', f, 987654321)), '987654321', 'N') AS same_as_no_message
  FROM unnest(ARRAY['wa_cancel_message', 'wa_retry_message']) f;
-- A SECURITY DEFINER function of the DBA's, owned by a superuser, does not lend its owner's
-- channels: the check is on the role the session acts as.
RESET ROLE;
CREATE FUNCTION regress_send_for(channel text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER AS $$ SELECT wa_send_text(channel, '15550000002', 'through a wrapper') $$;
GRANT EXECUTE ON FUNCTION regress_send_for(text) TO regress_agent_a;
SET ROLE regress_agent_a;
SELECT regress_refusal($$SELECT regress_send_for('tenant_b')$$) AS through_a_definer_wrapper;
-- Tenant B's photo, by id: NULL, as for no message at all. Its own: the bytes.
SELECT wa_media_content(:photo_b) IS NULL AS b_photo_hidden, convert_from(wa_media_content(:photo_a), 'UTF8') AS own_photo;
-- Who holds what: only its own grant.
SELECT channel, role, privilege FROM wa_channel_access;
-- Not even whether the other agent is an admin, or which channels it has.
SELECT _wa_visible_channels('regress_agent_b') AS b_channels, _wa_is_admin('regress_agent_b') AS b_admin;
-- Its own channel works.
SELECT wa_send_text('tenant_a', '15550000001', 'from A') > 0 AS sent_on_own_channel;
RESET ROLE;
SELECT count(*) - :messages_before AS messages_added FROM wa_messages;
SELECT status AS b_message_still FROM wa_messages WHERE id = :queued_b;

-- A grant, then a revoke, takes effect on the next statement of the same session.
SET ROLE regress_agent_a;
SELECT array_agg(name ORDER BY name) AS before_grant FROM wa_channels;
RESET ROLE;
SELECT wa_grant_channel('tenant_b', 'regress_agent_a', 'read');
SET ROLE regress_agent_a;
SELECT array_agg(name ORDER BY name) AS after_read_grant FROM wa_channels;
SELECT regress_refusal($$SELECT wa_send_text('tenant_b', '15550000002', 'read is not send')$$) AS send_with_read;
RESET ROLE;
SELECT wa_revoke_channel('tenant_b', 'regress_agent_a');
SET ROLE regress_agent_a;
SELECT array_agg(name ORDER BY name) AS after_revoke FROM wa_channels;
RESET ROLE;

-- ... also inside one transaction, where nothing commits in between (a session keeps the
-- answer of _wa_visible_channels until an invalidation: the grant's own command sends one).
BEGIN;
SET LOCAL ROLE regress_agent_a;
SELECT array_agg(name ORDER BY name) AS in_transaction_before FROM wa_channels;
RESET ROLE;
SELECT wa_grant_channel('tenant_b', 'regress_agent_a', 'read');
SET LOCAL ROLE regress_agent_a;
SELECT array_agg(name ORDER BY name) AS in_transaction_after FROM wa_channels;
ROLLBACK;

-- The owner still sees and does everything.
SELECT count(DISTINCT channel_id) AS owner_channels FROM wa_messages WHERE channel_id IN (:ch_a, :ch_b);
SELECT convert_from(wa_media_content(:photo_b), 'UTF8') AS owner_reads_b_photo;

DELETE FROM wa_channels WHERE name IN ('tenant_a', 'tenant_b');
DELETE FROM wa_webhook_events;
DROP FUNCTION regress_tenant_rows(text, text), regress_rows_by_channel(regclass, bigint), regress_refusal(text),
              regress_send_for(text);
-- DROP ROLE does not see a role's channel grants (a regrole column holds no dependency): the
-- maintenance worker deletes them once a minute, through this function.
SELECT wa_grant_channel(NULL, 'regress_agent_b', 'admin');
DROP OWNED BY regress_agent_a, regress_agent_b;
DROP ROLE regress_agent_a, regress_agent_b;
SELECT count(*) AS grants_of_dropped_roles FROM wa_channel_grants;
SELECT _wa_purge_dropped_grantees() AS deleted;
SELECT count(*) AS grants_left FROM wa_channel_grants;
