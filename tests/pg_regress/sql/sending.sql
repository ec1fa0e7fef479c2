-- Sending: every wa_send_* and wa_mark_read queues a row in the caller's transaction and
-- returns its id; what each checks when queued, with its SQLSTATE. (Nothing is delivered here:
-- no worker runs. Delivery is tested end to end, tests/e2e.)
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET client_min_messages = error;
SELECT regress_channel('send', '200001');
-- A customer who just wrote (their 24-hour window is open), one who wrote two days ago, and
-- a message of theirs to react to and mark read.
SELECT * FROM regress_customer_writes('send', '15551234567', 'wamid.send.in.1', 'Hello, is my order shipped?');
SELECT * FROM regress_customer_writes('send', '447700900123', 'wamid.send.in.2', 'Old news', at => '2020-01-01 12:00:00+00');
-- An active group a participant just wrote in, one nobody wrote in, a suspended one.
SELECT * FROM wa_replay_webhook_events(regress_webhook('send', jsonb_build_object(
    'contacts', '[{"profile": {"name": "Participant"}, "wa_id": "15550001111"}]'::jsonb,
    'messages', jsonb_build_array(jsonb_build_object(
        'from', '15550001111', 'id', 'wamid.send.group.1', 'timestamp', extract(epoch FROM now())::bigint::text,
        'group_id', 'Z3JvdXBBY3RpdmUwMDAwMDAwMQ', 'type', 'text', 'text', '{"body": "Hi all"}'::jsonb)))));
INSERT INTO wa_groups (channel_id, group_id, subject, status)
SELECT id, g.group_id, g.subject, g.status FROM wa_channels,
       (VALUES ('Z3JvdXBTaWxlbnQwMDAwMDAwMg', 'Silent', 'active'),
               ('Z3JvdXBTdXNwZW5kZWQwMDAwMw', 'Suspended', 'suspended'),
               ('Z3JvdXBEZWxldGVkMDAwMDAwNA', 'Deleted', 'deleted')) g (group_id, subject, status)
 WHERE name = 'send';
SELECT group_id, subject, status, last_inbound_at IS NOT NULL AS written_in FROM wa_groups ORDER BY subject;

-- What a queued message looks like.
CREATE FUNCTION pg_temp.queued(msg bigint)
RETURNS TABLE (direction text, source text, type text, status text, recipient text, to_contact text, group_id text,
               body text, payload jsonb)
LANGUAGE sql AS $$
    SELECT m.direction, m.source, m.type, m.status, m.recipient, k.wa_id, m.group_id, m.body, m.payload
      FROM wa_messages m LEFT JOIN wa_contacts k ON k.id = m.contact_id WHERE m.id = msg
$$;
\x on

-- wa_send_text: the recipient in any usual format, stored and sent as +E.164. Without
-- shared_preload_libraries it warns that nothing will send it (README, "Settings").
SET client_min_messages = warning;
SELECT wa_send_text('send', '+1 (555) 123-4567', 'Yes, it left today.') AS id \gset
SET client_min_messages = error;
SELECT * FROM pg_temp.queued(:id);
SELECT wa_send_text('send', '15551234567', 'See https://example.com/track', reply_to => 'wamid.send.in.1',
                    preview_url => true) AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT reply_to_wamid, next_attempt_at <= now() AS due, attempts, expires_at FROM wa_messages WHERE id = :id;
\x off
SELECT wa_send_text('no-such-channel', '15551234567', 'x'); \echo :SQLSTATE
SELECT wa_send_text('send', 'not a number', 'x'); \echo :SQLSTATE
SELECT wa_send_text('send', '15551234567', '   '); \echo :SQLSTATE
-- A NULL recipient or body is refused by name (22004).
SELECT wa_send_text('send', NULL, 'x'); \echo :SQLSTATE
SELECT wa_send_text('send', '15551234567', NULL); \echo :SQLSTATE
SELECT wa_send_location('send', '15551234567', NULL, 2.0); \echo :SQLSTATE
SELECT wa_send_text('send', '15551234567', 'x', preview_url => NULL); \echo :SQLSTATE
SELECT wa_send_text('send', '15551234567', repeat('a', 4097)); \echo :SQLSTATE
SELECT wa_send_text('send', '15551234567', repeat('é', 4096)) AS id \gset
SELECT length(payload #>> '{text,body}') AS characters FROM wa_messages WHERE id = :id;
-- The 24-hour window: closed for a customer who never wrote, or wrote more than 24 hours ago.
SELECT wa_send_text('send', '15559876543', 'x'); \echo :SQLSTATE
SELECT wa_send_text('send', '447700900123', 'x'); \echo :SQLSTATE
SELECT wa_send_text('send', 'US.13491208655302741918', 'x'); \echo :SQLSTATE
-- ... unless the channel allows it.
UPDATE wa_channels SET allow_outside_window = true WHERE name = 'send';
\x on
SELECT wa_send_text('send', '15559876543', 'Outside the window') AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT wa_send_text('send', 'US.13491208655302741918', 'To a BSUID') AS id \gset
SELECT * FROM pg_temp.queued(:id);
\x off
UPDATE wa_channels SET allow_outside_window = false WHERE name = 'send';
-- A disabled channel refuses new messages.
UPDATE wa_channels SET enabled = false WHERE name = 'send';
SELECT wa_send_text('send', '15551234567', 'x'); \echo :SQLSTATE
UPDATE wa_channels SET enabled = true WHERE name = 'send';

-- idempotency_key: a second call with the same key returns the first message's id and queues
-- nothing, whatever its other arguments; another key queues another message.
SELECT wa_send_text('send', '15551234567', 'Once', idempotency_key => 'order-42') AS first \gset
SELECT wa_send_text('send', '15551234567', 'Twice?', idempotency_key => 'order-42') = :first AS same_id,
       wa_send_media('send', '15551234567', 'image', '1234567890', idempotency_key => 'order-42') = :first AS same_id_other_kind,
       wa_send_text('send', '15551234567', 'Once', idempotency_key => 'order-43') = :first AS other_key_same_id;
SELECT idempotency_key, body FROM wa_messages WHERE idempotency_key IS NOT NULL ORDER BY idempotency_key;

-- expires_at: kept with the message; a time not in the future is refused.
SELECT wa_send_text('send', '15551234567', 'Your code is 1234', expires_at => now() + interval '10 minutes') AS id \gset
SELECT expires_at > now() AS in_the_future FROM wa_messages WHERE id = :id;
SELECT wa_send_text('send', '15551234567', 'x', expires_at => '2020-01-01 00:00:00+00'); \echo :SQLSTATE

-- wa_send_media: by media id or by link; caption and filename where Meta takes them.
\x on
SELECT wa_send_media('send', '15551234567', 'image', '1234567890', caption => 'Your receipt') AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT wa_send_media('send', '15551234567', 'document', ' https://example.com/invoice.pdf ', caption => 'Invoice',
                     filename => 'invoice.pdf') AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT media_id, media_filename FROM wa_messages WHERE id = :id;
\x off
SELECT wa_send_media('send', '15551234567', 'gif', '1234567890'); \echo :SQLSTATE
SELECT wa_send_media('send', '15551234567', 'image', 'photo.jpg'); \echo :SQLSTATE
SELECT wa_send_media('send', '15551234567', 'image', ''); \echo :SQLSTATE
SELECT wa_send_media('send', '15551234567', 'audio', '1234567890', caption => 'Listen'); \echo :SQLSTATE
SELECT wa_send_media('send', '15551234567', 'video', '1234567890', caption => repeat('c', 1025)); \echo :SQLSTATE
SELECT wa_send_media('send', '15551234567', 'image', '1234567890', filename => 'a.jpg'); \echo :SQLSTATE
SELECT wa_send_media('send', '15559876543', 'image', '1234567890'); \echo :SQLSTATE

-- wa_send_template: the only kind that needs no open window. (A channel whose templates were
-- never synced is not checked against them: templates.sql.)
\x on
SELECT wa_send_template('send', '15559876543', 'order_update', 'en_US',
                        '[{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]') AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT graph_endpoint, expires_at FROM wa_messages WHERE id = :id;
\x off
SELECT wa_send_template('send', '15559876543', 'Order Update', 'en_US'); \echo :SQLSTATE
SELECT wa_send_template('send', '15559876543', 'order_update', 'english'); \echo :SQLSTATE
SELECT wa_send_template('send', '15559876543', 'order_update', 'en_us'); \echo :SQLSTATE

-- wa_send_interactive: Meta's interactive object, checked for its shape.
\x on
SELECT wa_send_interactive('send', '15551234567',
    '{"type": "button", "body": {"text": "Pick one"},
      "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}}]}}') AS id \gset
SELECT * FROM pg_temp.queued(:id);
\x off
SELECT wa_send_interactive('send', '15551234567', '{"type": "button", "body": {"text": "Pick one"}}'); \echo :SQLSTATE
SELECT wa_send_interactive('send', '15551234567', '[]'); \echo :SQLSTATE
SELECT wa_send_interactive('send', '15551234567',
    '{"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [{}, {}, {}, {}]}}'); \echo :SQLSTATE
SELECT wa_send_interactive('send', '15559876543',
    '{"type": "list", "body": {"text": "Menu"}, "action": {"button": "See", "sections": []}}'); \echo :SQLSTATE

-- wa_send_location.
\x on
SELECT wa_send_location('send', '15551234567', 37.4851, -122.1483, name => 'Meta HQ',
                        address => '1 Hacker Way, Menlo Park, CA') AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT latitude, longitude, location_name, location_address FROM wa_messages WHERE id = :id;
\x off
SELECT wa_send_location('send', '15551234567', 91, 0); \echo :SQLSTATE
SELECT wa_send_location('send', '15551234567', 0, -180.5); \echo :SQLSTATE

-- wa_send_reaction and wa_mark_read name a message by wamid; they go to whoever it was
-- exchanged with.
\x on
SELECT wa_send_reaction('send', 'wamid.send.in.1', '👍') AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT reaction_to_wamid, reaction_emoji FROM wa_messages WHERE id = :id;
SELECT wa_send_reaction('send', 'wamid.send.in.1', '') AS id \gset
SELECT payload -> 'reaction' AS reaction, reaction_emoji FROM wa_messages WHERE id = :id;
SELECT wa_mark_read('send', 'wamid.send.in.1') AS id \gset
SELECT * FROM pg_temp.queued(:id);
-- A read receipt needs no open window, and may show a typing indicator.
SELECT wa_mark_read('send', 'wamid.send.in.2', typing => true) AS id \gset
SELECT * FROM pg_temp.queued(:id);
\x off
SELECT wa_send_reaction('send', 'wamid.no.such', '👍'); \echo :SQLSTATE
SELECT wa_mark_read('send', 'wamid.no.such'); \echo :SQLSTATE
SELECT wa_mark_read('no-such-channel', 'wamid.send.in.1'); \echo :SQLSTATE
SELECT wa_send_reaction('no-such-channel', 'wamid.send.in.1', '👍'); \echo :SQLSTATE
-- A reaction to a customer whose window is closed is a free-form message: refused.
SELECT wa_send_reaction('send', 'wamid.send.in.2', '👍'); \echo :SQLSTATE

-- Groups: a group id as recipient sends to the group, while it is active and within 24 hours
-- of a participant's message.
\x on
SELECT wa_send_text('send', 'Z3JvdXBBY3RpdmUwMDAwMDAwMQ', 'Hello group') AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT wa_send_media('send', 'Z3JvdXBBY3RpdmUwMDAwMDAwMQ', 'image', '1234567890') AS id \gset
SELECT * FROM pg_temp.queued(:id);
SELECT wa_send_template('send', 'Z3JvdXBTaWxlbnQwMDAwMDAwMg', 'group_welcome', 'en') AS id \gset
SELECT * FROM pg_temp.queued(:id);
\x off
SELECT wa_send_text('send', 'Z3JvdXBTaWxlbnQwMDAwMDAwMg', 'x'); \echo :SQLSTATE
SELECT wa_send_text('send', 'Z3JvdXBVbmtub3duMDAwMDAwNQ', 'x'); \echo :SQLSTATE
SELECT wa_send_text('send', 'Z3JvdXBTdXNwZW5kZWQwMDAwMw', 'x'); \echo :SQLSTATE
SELECT wa_send_template('send', 'Z3JvdXBEZWxldGVkMDAwMDAwNA', 'group_welcome', 'en'); \echo :SQLSTATE
-- What Meta's Groups API does not take.
SELECT wa_send_interactive('send', 'Z3JvdXBBY3RpdmUwMDAwMDAwMQ',
    '{"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}'); \echo :SQLSTATE
SELECT wa_send_location('send', 'Z3JvdXBBY3RpdmUwMDAwMDAwMQ', 0, 0); \echo :SQLSTATE
SELECT wa_send_reaction('send', 'wamid.send.group.1', '👍'); \echo :SQLSTATE
SELECT wa_mark_read('send', 'wamid.send.group.1'); \echo :SQLSTATE

-- A rolled-back transaction queues nothing; everything above is queued, nothing sent.
SELECT count(*) AS queued_before FROM wa_messages WHERE direction = 'outbound' \gset
BEGIN;
SELECT wa_send_text('send', '15551234567', 'Never mind') > 0 AS queued;
ROLLBACK;
SELECT count(*) = :queued_before AS nothing_left FROM wa_messages WHERE direction = 'outbound';
SELECT type, status, count(*) FROM wa_messages WHERE direction = 'outbound' GROUP BY 1, 2 ORDER BY 1, 2;

DELETE FROM wa_channels WHERE name = 'send';
