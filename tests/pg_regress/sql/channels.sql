-- Channels: wa_add_channel, wa_set_access_token(_from_file), wa_webhook_url and the errors of
-- wa_sync_templates (its Graph API call itself is tested end to end, tests/e2e/tests/templates.rs).
\set SHOW_CONTEXT never
-- Without shared_preload_libraries (see run.sh) every change to a channel warns that no worker
-- will see it: true, and the same for every test, so not shown.
SET client_min_messages = error;

-- wa_add_channel returns the new channel's id; the channel has the documented defaults and its
-- credentials are in wa_channel_secrets, not wa_channels.
SELECT wa_add_channel('ch-support', '106540352242922', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef',
                      'verify-me', '102290129340398') > 0 AS added;
SELECT name, phone_number_id, waba_id, graph_api_version, enabled, allow_outside_window, max_messages_per_second,
       paused_at, paused_reason, marketing_messages, unreachable_since, authentication_template_ttl
  FROM wa_channels WHERE name = 'ch-support';
SELECT s.access_token, s.app_secret, s.verify_token
  FROM wa_channel_secrets s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = 'ch-support';
-- waba_id is optional.
SELECT wa_add_channel('ch_2', '2', 'EAAGtokentokentoken', '0123456789ABCDEF0123456789abcdef', 'v') > 0 AS added;
SELECT name, waba_id FROM wa_channels WHERE name = 'ch_2';

-- Each field is checked, and the refusal names it and where to copy it from.
-- A NULL for a field is refused by name (22004), like any other missing value.
SELECT wa_add_channel(NULL, '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAGtokentokentoken', NULL, 'v'); \echo :SQLSTATE
SELECT wa_add_channel('', '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('Support', '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel(repeat('x', 64), '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '+1 555 123 4567', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAG', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAGtoken tokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAGtokentokentoken', 'EAAGtokentokentoken', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcde', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', ''); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'my token'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', repeat('v', 201)); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v', 'WABA-1'); \echo :SQLSTATE
-- A name or a Phone Number ID that another channel has.
SELECT wa_add_channel('ch-support', '3', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
SELECT wa_add_channel('ch-3', '106540352242922', 'EAAGtokentokentoken', '0123456789abcdef0123456789abcdef', 'v'); \echo :SQLSTATE
-- None of these added anything.
SELECT name FROM wa_channels ORDER BY name;

-- wa_set_access_token: replaces the token and resumes a queue that a token error paused.
UPDATE wa_channels SET paused_at = now(), paused_reason = 'token expired (190)' WHERE name = 'ch-support';
SELECT wa_set_access_token('ch-support', 'EAAGsecondtokensecond');
SELECT c.paused_at, c.paused_reason, s.access_token
  FROM wa_channels c JOIN wa_channel_secrets s ON s.channel_id = c.id WHERE c.name = 'ch-support';
SELECT wa_set_access_token('ch-support', 'EAAG'); \echo :SQLSTATE
SELECT wa_set_access_token('ch-support', E'EAAGsecondtokensecond\n'); \echo :SQLSTATE
SELECT wa_set_access_token('ch-support', NULL); \echo :SQLSTATE
SELECT wa_set_access_token('no-such-channel', 'EAAGsecondtokensecond'); \echo :SQLSTATE

-- wa_set_access_token_from_file: the first line of a server file, blanks trimmed (a path
-- relative to the data directory here, so that the test runs anywhere).
DO $$ BEGIN
    EXECUTE format('COPY (VALUES (%L), (%L)) TO %L', '  EAAGfromthefilefromthefile  ', 'second line',
                   current_setting('data_directory') || '/regress_token');
END $$;
SELECT pg_read_file('regress_token');
SELECT wa_set_access_token_from_file('ch-support', 'regress_token');
SELECT s.access_token FROM wa_channel_secrets s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = 'ch-support';
SELECT wa_set_access_token_from_file('no-such-channel', 'regress_token'); \echo :SQLSTATE
SELECT wa_set_access_token_from_file('ch-support', 'regress_no_such_file'); \echo :SQLSTATE
DO $$ BEGIN
    EXECUTE format('COPY (SELECT %L) TO %L', '', current_setting('data_directory') || '/regress_token');
END $$;
SELECT pg_read_file('regress_token');
SELECT wa_set_access_token_from_file('ch-support', 'regress_token'); \echo :SQLSTATE

-- wa_webhook_url: the Callback URL for Meta. Without whatsapp_channel.public_url it is the
-- listener's own address, with a notice that Meta cannot reach it.
SET client_min_messages = notice;
SELECT wa_webhook_url('ch-support');
SET whatsapp_channel.public_url = 'https://inbox.example.com/';
SELECT wa_webhook_url('ch-support');
SET whatsapp_channel.public_url = 'https://inbox.example.com/whatsapp';
SELECT wa_webhook_url('ch_2');
SELECT wa_webhook_url('no-such-channel'); \echo :SQLSTATE
RESET whatsapp_channel.public_url;
SET client_min_messages = error;

-- wa_sync_templates: refused before any call for an unknown channel or one without waba_id;
-- a Graph API that does not answer is a connection failure (postgresql.conf here points it
-- at a port where nothing listens).
SELECT wa_sync_templates('no-such-channel'); \echo :SQLSTATE
SELECT wa_sync_templates(NULL); \echo :SQLSTATE
SELECT wa_sync_templates('ch_2'); \echo :SQLSTATE
SELECT current_setting('whatsapp_channel.graph_api_url');
SELECT wa_sync_templates('ch-support'); \echo :SQLSTATE

-- A channel keeps its credentials while it exists (the claims of its queues and downloads join
-- them): deleting them alone is refused, with what to do instead, and they stay.
DELETE FROM wa_channel_secrets s USING wa_channels c WHERE c.id = s.channel_id AND c.name = 'ch-support'; \echo :SQLSTATE
SELECT count(*) AS secrets_kept FROM wa_channel_secrets s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = 'ch-support';
TRUNCATE wa_channel_secrets; \echo :SQLSTATE
SELECT count(*) AS secrets_kept FROM wa_channel_secrets;

-- A channel is removed with DELETE; its secrets go with it.
DELETE FROM wa_channels WHERE name IN ('ch-support', 'ch_2');
SELECT count(*) AS secrets_left FROM wa_channel_secrets;
