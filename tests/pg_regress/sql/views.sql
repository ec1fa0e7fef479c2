-- wa_replay_webhook_events and the views inbox apps read: wa_conversations,
-- wa_channel_health, wa_message_costs, wa_metrics. Columns, then content after known events.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET client_min_messages = error;

SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) AS columns
  FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name IN ('wa_conversations', 'wa_channel_health', 'wa_message_costs', 'wa_metrics')
 GROUP BY table_name ORDER BY table_name \gx

SELECT regress_channel('views', '200004');
-- Nothing yet: the channel's health row, and no conversations.
SELECT channel, phone_number_id, enabled, outbox_paused_at, outbox_paused_reason, last_verified_handshake_at,
       last_verified_post_at, last_signature_failure_at, last_signature_failure_cause, last_verify_token_mismatch_at,
       last_unrouted_at, last_unrouted_phone_number_id, counts, outbox_queued, last_send_failure_at,
       last_send_failure_hint, incomplete_webhook_events, graph_api_unreachable_since
  FROM wa_channel_health WHERE channel = 'views' \gx
SELECT count(*) AS conversations FROM wa_conversations WHERE channel = 'views';

-- wa_replay_webhook_events processes stored POSTs and adds only what is missing: a second
-- replay of the same event finds nothing new.
SELECT * FROM regress_customer_writes('views', '15551234567', 'wamid.views.in.1', 'Hello', name => 'Ann');
SELECT * FROM regress_customer_writes('views', '15551234567', 'wamid.views.in.2', 'Anyone there?', name => 'Ann');
SELECT * FROM regress_customer_writes('views', '447700900123', 'wamid.views.in.3', 'Old', at => '2020-01-01 12:00:00+00', name => 'Bob');
SELECT min(id) AS first_event, max(id) AS last_event FROM wa_webhook_events \gset
SELECT * FROM wa_replay_webhook_events(:first_event, :last_event);
SELECT * FROM wa_replay_webhook_events(channel => 'views');
-- An unknown channel is refused like everywhere else, with a hint.
SELECT * FROM wa_replay_webhook_events(channel => 'nope'); \echo :SQLSTATE
SELECT * FROM wa_replay_webhook_events(:last_event + 1);
SELECT outcome, error FROM wa_webhook_events ORDER BY id;
-- A stored body that is not a webhook payload is skipped: not counted, nothing stored.
INSERT INTO wa_webhook_events (channel_id, body, outcome)
SELECT id, convert_to('{"object": "page"}', 'UTF8'), 'stored' FROM wa_channels WHERE name = 'views' RETURNING id AS odd \gset
SELECT * FROM wa_replay_webhook_events(:odd, :odd);

-- wa_conversations: one row per customer, the last message, unread count and the window
-- (24 hours from the customer's last message, by Meta's timestamp).
SELECT channel, wa_id, profile_name, last_direction, last_type, last_body, unread_count,
       last_customer_message_at < now() - interval '1 day' AS wrote_long_ago,
       window_closes_at - last_customer_message_at AS window, window_open, group_id
  FROM wa_conversations WHERE channel = 'views' ORDER BY wa_id;
-- A reply counts the customer's messages as read and becomes the last message.
SELECT wa_send_text('views', '15551234567', 'Here!') > 0 AS queued;
SELECT wa_id, last_direction, last_body, unread_count, window_open
  FROM wa_conversations WHERE channel = 'views' ORDER BY wa_id;

-- Status webhooks: the message moves forward, each status is kept once with its pricing.
UPDATE wa_messages SET status = 'sent', wamid = 'wamid.views.out.1', sent_at = '2026-01-02 10:00:00+00'
 WHERE body = 'Here!';
SELECT * FROM wa_replay_webhook_events(regress_webhook('views', jsonb_build_object('statuses', jsonb_build_array(
    jsonb_build_object('id', 'wamid.views.out.1', 'status', 'delivered', 'timestamp', '1767348060', 'recipient_id', '15551234567',
                       'pricing', '{"billable": true, "pricing_model": "PMP", "type": "regular", "category": "service"}'::jsonb),
    jsonb_build_object('id', 'wamid.views.out.1', 'status', 'read', 'timestamp', '1767348120', 'recipient_id', '15551234567',
                       'pricing', '{"billable": true, "pricing_model": "PMP", "type": "regular", "category": "service"}'::jsonb)))));
SELECT status, delivered_at, read_at FROM wa_messages WHERE wamid = 'wamid.views.out.1';
SELECT status, status_at, pricing_model, pricing_type, pricing_category, billable
  FROM wa_message_statuses WHERE wamid = 'wamid.views.out.1' ORDER BY status_at;
-- wa_message_costs: each message once, on the day of its first priced status.
SELECT channel, day, category, type, model, messages, billable_messages FROM wa_message_costs WHERE channel = 'views';
-- A failed send is in the health view with Meta's hint.
UPDATE wa_messages SET status = 'failed', failed_at = now(), error_code = 131047,
       error_title = 'Re-engagement message', error_hint = wa_error_hint(131047)
 WHERE id = (SELECT min(id) FROM wa_messages WHERE direction = 'outbound');
SELECT channel, phone_number_id, enabled, outbox_paused_at, counts, outbox_queued, last_send_failure_at IS NOT NULL AS failed,
       last_send_failure_hint, incomplete_webhook_events, graph_api_unreachable_since
  FROM wa_channel_health WHERE channel = 'views' \gx

-- wa_metrics: without shared_preload_libraries no worker counts anything (the samples of a
-- histogram summed up here), and neither the listeners (as many as whatsapp_channel.listener_workers
-- says for this machine's cores) nor the delivery worker is up.
SELECT metric, count(*) AS samples, sum(value) AS total, string_agg(DISTINCT k, ', ') AS label_names
  FROM wa_metrics LEFT JOIN LATERAL jsonb_object_keys(labels) k ON true
 WHERE metric <> 'whatsapp_channel_worker_up'
 GROUP BY metric ORDER BY metric;
SELECT labels ->> 'worker' AS worker, value FROM wa_metrics
 WHERE metric = 'whatsapp_channel_worker_up' AND labels ->> 'worker' IN ('delivery', 'maintenance', 'webhook listener 1')
 ORDER BY worker;

DELETE FROM wa_channels WHERE name = 'views';
DELETE FROM wa_webhook_events;
