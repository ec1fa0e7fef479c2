-- Media: an inbound photo becomes a download job in wa_media (done by the delivery worker,
-- which does not run here: its end is written by hand); wa_media_content returns the bytes
-- once downloaded. wa_upload_media's refusals (its Graph API call is tested end to end).
\set SHOW_CONTEXT never
SET client_min_messages = error;
SELECT regress_channel('media', '200005');

SELECT * FROM wa_replay_webhook_events(regress_webhook('media', jsonb_build_object(
    'contacts', '[{"profile": {"name": "Ann"}, "wa_id": "15551234567"}]'::jsonb,
    'messages', jsonb_build_array(jsonb_build_object(
        'from', '15551234567', 'id', 'wamid.media.in.1', 'timestamp', extract(epoch FROM now())::bigint::text,
        'type', 'image', 'image', '{"id": "987654321", "mime_type": "image/png", "sha256": "q83v", "caption": "My receipt"}'::jsonb)))));
SELECT id AS photo FROM wa_messages WHERE wamid = 'wamid.media.in.1' \gset
SELECT type, body, media_id, media_mime_type, media_sha256 FROM wa_messages WHERE id = :photo;
SELECT j.media_id, j.status, j.mime_type, j.expected_sha256, j.attempts, j.content FROM wa_media j WHERE j.message_id = :photo;
-- The job is due now for the delivery worker, by media's own due time: the messages' one says
-- nothing is due (nothing else is queued here).
SELECT _wa_next_media_due_in() <= 0 AS download_due, _wa_next_due_in() IS NULL AS nothing_else_due;

-- Before the download ends: NULL. After: the bytes. A failed or skipped job, or an unknown
-- message: NULL.
SELECT wa_media_content(:photo) IS NULL AS not_yet;
UPDATE wa_media SET status = 'done', content = '\x89504e470d0a1a0a'::bytea, size = 8 WHERE message_id = :photo;
SELECT wa_media_content(:photo);
-- Nothing waits now: NULL, not 0 (which would have the worker look for media at every turn).
SELECT _wa_next_media_due_in() IS NULL AS none_waits;
UPDATE wa_media SET status = 'skipped', content = NULL, error = 'image/png of 20000000 bytes is over max_media_bytes'
 WHERE message_id = :photo;
SELECT wa_media_content(:photo) IS NULL AS skipped;
SELECT wa_media_content(-1) IS NULL AS unknown;
SELECT wa_media_content(NULL) IS NULL AS null_id;

-- What the delivery worker writes when Meta refuses the channel's token (190; written by hand
-- here). While the channel still has the refused token: the channel is paused saying why, and
-- the download, its attempt given back, waits 5 minutes with the channel's other waiting ones.
-- wa_set_access_token() resumes the channel and makes them due at once. A refusal of the old
-- token that comes back after it was replaced leaves the channel running and the download due.
SELECT * FROM wa_replay_webhook_events(regress_webhook('media', jsonb_build_object(
    'contacts', '[{"profile": {"name": "Ann"}, "wa_id": "15551234567"}]'::jsonb,
    'messages', jsonb_build_array(jsonb_build_object(
        'from', '15551234567', 'id', 'wamid.media.in.2', 'timestamp', extract(epoch FROM now())::bigint::text,
        'type', 'image', 'image', '{"id": "987654322", "mime_type": "image/png", "sha256": "q83w"}'::jsonb)))));
SELECT id AS photo2 FROM wa_messages WHERE wamid = 'wamid.media.in.2' \gset
-- (The worker passes the refused token's SHA-256, not the token.)
SELECT encode(sha256(convert_to(s.access_token, 'UTF8')), 'hex') AS old_token
  FROM wa_channel_secrets s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = 'media' \gset
UPDATE wa_media SET status = 'downloading', attempts = 1, error = NULL WHERE message_id = :photo;
SELECT _wa_media_waits_for_token(:photo, :'old_token', 'Invalid OAuth access token: the access token has expired', 300);
SELECT paused_reason FROM wa_channels WHERE name = 'media';
SELECT message_id = :photo AS refused_one, status, attempts, error, next_attempt_at > now() + interval '290 s' AS waits
  FROM wa_media WHERE message_id IN (:photo, :photo2) ORDER BY message_id;
SELECT wa_set_access_token('media', 'EAAGmediatokennew0000');
SELECT paused_at IS NULL AS resumed FROM wa_channels WHERE name = 'media';
SELECT message_id = :photo AS refused_one, next_attempt_at <= now() AS due FROM wa_media WHERE message_id IN (:photo, :photo2) ORDER BY message_id;
UPDATE wa_media SET status = 'downloading', attempts = 1 WHERE message_id = :photo;
SELECT _wa_media_waits_for_token(:photo, :'old_token', 'Invalid OAuth access token: the access token has expired', 300);
SELECT paused_at IS NULL AS still_running FROM wa_channels WHERE name = 'media';
SELECT status, attempts, next_attempt_at <= now() AS due FROM wa_media WHERE message_id = :photo;
-- Meta out of reach: the download waits it out, its attempt given back, and the channel's
-- other waiting download waits as long.
UPDATE wa_media SET status = 'downloading', attempts = 1 WHERE message_id = :photo;
SELECT _wa_media_waits(:photo, 'connection refused', 30);
SELECT message_id = :photo AS failed_one, status, attempts, error, next_attempt_at > now() + interval '20 s' AS waits
  FROM wa_media WHERE message_id IN (:photo, :photo2) ORDER BY message_id;

-- wa_upload_media: refused before any call for an empty file, a type that is no MIME type, an
-- unknown channel; a Graph API that does not answer is a connection failure (postgresql.conf).
SELECT wa_upload_media('media', ''::bytea, 'image/png'); \echo :SQLSTATE
SELECT wa_upload_media('media', '\x89504e47'::bytea, 'png'); \echo :SQLSTATE
SELECT wa_upload_media('no-such-channel', '\x89504e47'::bytea, 'image/png'); \echo :SQLSTATE
SELECT wa_upload_media('media', '\x89504e47'::bytea, 'image/png', 'receipt.png'); \echo :SQLSTATE

DELETE FROM wa_channels WHERE name = 'media';
DELETE FROM wa_webhook_events;
