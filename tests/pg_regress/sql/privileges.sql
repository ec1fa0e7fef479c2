-- Privileges (README, "Roles"): PUBLIC may call only the pure helpers; an inbox role with the
-- README's grants may send and read but not touch credentials or channels; a role without
-- grants is refused everything else with 42501. The roles are made in setup.sql.
\set SHOW_CONTEXT never
SET client_min_messages = error;
SELECT regress_channel('priv', '200006');
SELECT * FROM regress_customer_writes('priv', '15551234567', 'wamid.priv.in.1', 'Hello');

-- The allow-list of sql/privileges.sql: what PUBLIC may execute.
SELECT p.oid::regprocedure AS callable_by_public
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'whatsapp_channel')
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;
-- What the policies call keeps Postgres' default privileges (no ACL of its own), and gets
-- PUBLIC's EXECUTE back from _wa_apply_privileges() if something revoked it.
SELECT proacl IS NULL AS policy_function_default_acl FROM pg_proc WHERE oid = '_wa_visible_channels()'::regprocedure;
REVOKE EXECUTE ON FUNCTION _wa_visible_channels() FROM PUBLIC;
SELECT _wa_apply_privileges();
SELECT has_function_privilege('public', '_wa_visible_channels()', 'EXECUTE') AS public_may_call_it_again;
-- No table or view of the extension is readable by PUBLIC.
SELECT count(*) AS readable_by_public
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'whatsapp_channel')
   AND has_table_privilege('public', c.oid, 'SELECT');
-- What runs as the extension owner, each with a fixed search_path (CVE-2018-1058).
SELECT p.oid::regprocedure AS security_definer, p.proconfig
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'whatsapp_channel')
   AND p.prosecdef
 ORDER BY p.oid::regprocedure::text;

-- A role with no grants: the pure helpers work, nothing else does.
SET ROLE regress_nobody;
SELECT wa_normalize_phone('+1 555 123 4567'), wa_normalize_recipient('US.1349120865530274'),
       wa_error_hint(190) IS NOT NULL AS hint,
       wa_verify_signature('0123456789abcdef0123456789abcdef', 'x'::text, 'sha256=00') AS text_signature,
       wa_verify_signature('0123456789abcdef0123456789abcdef', '\x00'::bytea, 'sha256=00') AS bytea_signature;
SELECT wa_send_text('priv', '15551234567', 'x'); \echo :SQLSTATE
SELECT wa_send_media('priv', '15551234567', 'image', '1234567890'); \echo :SQLSTATE
SELECT wa_send_template('priv', '15551234567', 'hello', 'en'); \echo :SQLSTATE
SELECT wa_send_interactive('priv', '15551234567', '{}'); \echo :SQLSTATE
SELECT wa_send_location('priv', '15551234567', 0, 0); \echo :SQLSTATE
SELECT wa_send_reaction('priv', 'wamid.priv.in.1', '👍'); \echo :SQLSTATE
SELECT wa_mark_read('priv', 'wamid.priv.in.1'); \echo :SQLSTATE
SELECT wa_media_content(1); \echo :SQLSTATE
SELECT wa_upload_media('priv', '\x00'::bytea, 'image/png'); \echo :SQLSTATE
SELECT wa_add_channel('x', '1', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_set_access_token('priv', 'EAAGtokentokentoken'); \echo :SQLSTATE
SELECT wa_set_access_token_from_file('priv', 'regress_token'); \echo :SQLSTATE
SELECT wa_sync_templates('priv'); \echo :SQLSTATE
SELECT * FROM wa_replay_webhook_events(); \echo :SQLSTATE
SELECT count(*) FROM wa_channels; \echo :SQLSTATE
SELECT count(*) FROM wa_conversations; \echo :SQLSTATE
SELECT count(*) FROM wa_metrics; \echo :SQLSTATE
RESET ROLE;

-- The inbox role of README, "Roles" (the exact grants, in setup.sql), granted the channel: it
-- sends, reads the views and the media bytes, and can upload (refused here only by the
-- unreachable Graph API).
SELECT wa_grant_channel('priv', 'regress_inbox');
SET ROLE regress_inbox;
SELECT wa_send_text('priv', '15551234567', 'From the inbox') > 0 AS queued;
SELECT wa_send_reaction('priv', 'wamid.priv.in.1', '👍') > 0 AS queued;
SELECT wa_mark_read('priv', 'wamid.priv.in.1') > 0 AS queued;
SELECT wa_send_template('priv', '15559876543', 'hello', 'en') > 0 AS queued;
SELECT m.type, m.body, m.status FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id
 WHERE c.name = 'priv' AND m.direction = 'outbound' ORDER BY m.id;
SELECT wa_id, last_body, unread_count FROM wa_conversations WHERE channel = 'priv';
SELECT channel, outbox_queued FROM wa_channel_health WHERE channel = 'priv';
SELECT count(*) AS costs FROM wa_message_costs WHERE channel = 'priv';
SELECT count(*) AS templates FROM wa_templates;
SELECT wa_media_content(-1) IS NULL AS no_such_media;
SELECT wa_upload_media('priv', '\x00'::bytea, 'image/png'); \echo :SQLSTATE
-- ... but not the credentials, channels or the administrator's functions (wa_webhook_url
-- reads wa_channels: it is the administrator's, not a pure helper). The raw webhooks of its
-- channel it may read (wa_channel_health counts them).
SELECT wa_webhook_url('priv'); \echo :SQLSTATE
SELECT access_token FROM wa_channel_secrets; \echo :SQLSTATE
SELECT count(*) FROM wa_webhook_events;
UPDATE wa_channels SET enabled = false WHERE name = 'priv'; \echo :SQLSTATE
INSERT INTO wa_messages (channel_id, direction, type, status) VALUES (1, 'outbound', 'text', 'queued'); \echo :SQLSTATE
SELECT wa_add_channel('x', '1', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_set_access_token('priv', 'EAAGtokentokentoken'); \echo :SQLSTATE
SELECT wa_sync_templates('priv'); \echo :SQLSTATE
SELECT * FROM wa_replay_webhook_events(); \echo :SQLSTATE
SELECT count(*) FROM wa_metrics; \echo :SQLSTATE
RESET ROLE;

-- wa_set_access_token_from_file runs with the caller's own rights: besides EXECUTE on both
-- functions, pg_read_file() needs EXECUTE (not granted to PUBLIC), and a file outside the data
-- directory (as a token file would be) needs pg_read_server_files; or superuser.
CREATE ROLE regress_tokens;
GRANT EXECUTE ON FUNCTION wa_set_access_token(text, text), wa_set_access_token_from_file(text, text) TO regress_tokens;
SELECT wa_grant_channel(NULL, 'regress_tokens', 'admin');
SELECT current_setting('data_directory') || '/../regress_token' AS token_file \gset
DO $$ BEGIN
    EXECUTE format('COPY (VALUES (%L)) TO %L', 'EAAGfromthefilefromthefile', current_setting('data_directory') || '/../regress_token');
END $$;
SET ROLE regress_tokens;
SELECT wa_set_access_token_from_file('priv', :'token_file'); \echo :SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION pg_read_file(text) TO regress_tokens;
SET ROLE regress_tokens;
SELECT wa_set_access_token_from_file('priv', :'token_file'); \echo :SQLSTATE
RESET ROLE;
GRANT pg_read_server_files TO regress_tokens;
SET ROLE regress_tokens;
SELECT wa_set_access_token_from_file('priv', :'token_file');
RESET ROLE;
SELECT s.access_token FROM wa_channel_secrets s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = 'priv';
-- wa_set_access_token runs as the owner, and takes the admin privilege besides EXECUTE.
SELECT wa_revoke_channel(NULL, 'regress_tokens', 'admin');
SET ROLE regress_tokens;
SELECT wa_set_access_token('priv', 'EAAGsetbyarolesetbyarole'); \echo :SQLSTATE
RESET ROLE;
SELECT wa_grant_channel(NULL, 'regress_tokens', 'admin');
SET ROLE regress_tokens;
SELECT wa_set_access_token('priv', 'EAAGsetbyarolesetbyarole');
RESET ROLE;
SELECT s.access_token FROM wa_channel_secrets s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = 'priv';

-- A monitoring role reads wa_metrics with the two grants README, "Metrics", gives.
CREATE ROLE regress_monitoring;
GRANT SELECT ON wa_metrics TO regress_monitoring;
GRANT EXECUTE ON FUNCTION _wa_metrics() TO regress_monitoring;
SET ROLE regress_monitoring;
SELECT count(*) > 0 AS samples FROM wa_metrics;
RESET ROLE;

DELETE FROM wa_channels WHERE name = 'priv';
DELETE FROM wa_channel_grants WHERE grantee = 'regress_tokens'::regrole;
DELETE FROM wa_webhook_events;
DROP OWNED BY regress_tokens, regress_monitoring;
DROP ROLE regress_tokens, regress_monitoring;
