-- wa_send_template against the channel's synced templates (wa_templates, as wa_sync_templates
-- and template status webhooks leave it; filled in by hand here, as no Graph API answers):
-- every refusal of README's "Checked when queued", with its SQLSTATE; and what a template's
-- category changes.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET client_min_messages = error;
SELECT regress_channel('tpl', '200002');
SELECT regress_channel('tpl-unsynced', '200003');

INSERT INTO wa_templates (channel_id, name, language, status, category, reason, components)
SELECT c.id, t.name, t.language, t.status, t.category, t.reason, t.components::jsonb
  FROM wa_channels c, (VALUES
    ('order_update', 'en_US', 'APPROVED', 'UTILITY', NULL,
     '[{"type": "BODY", "text": "Order {{1}} ships on {{2}}."}]'),
    ('order_update', 'pt_BR', 'APPROVED', 'UTILITY', NULL,
     '[{"type": "BODY", "text": "Pedido {{1}} sai em {{2}}."}]'),
    ('promo', 'en_US', 'REJECTED', 'MARKETING', 'INVALID_FORMAT',
     '[{"type": "BODY", "text": "Sale!"}]'),
    ('paused_promo', 'en_US', 'PAUSED', 'MARKETING', NULL,
     '[{"type": "BODY", "text": "Sale!"}]'),
    ('welcome', 'en', 'APPROVED', 'MARKETING', NULL,
     '[{"type": "BODY", "text": "Welcome, {{first_name}}!"}]'),
    ('receipt', 'en', 'APPROVED', 'UTILITY', NULL,
     '[{"type": "HEADER", "format": "DOCUMENT"}, {"type": "BODY", "text": "Your receipt."}]'),
    ('tracking', 'en', 'APPROVED', 'UTILITY', NULL,
     '[{"type": "BODY", "text": "On its way."},
       {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://example.com/t/{{1}}"}]}]'),
    ('login_code', 'en', 'APPROVED', 'AUTHENTICATION', NULL,
     '[{"type": "BODY", "text": "{{1}} is your code."},
       {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "123456"}]}]')
  ) t (name, language, status, category, reason, components)
 WHERE c.name = 'tpl';

-- Accepted: the right number of body parameters (no 24-hour window needed).
SELECT wa_send_template('tpl', '15551234567', 'order_update', 'en_US',
    '[{"type": "body", "parameters": [{"type": "text", "text": "42"}, {"type": "text", "text": "Monday"}]}]') AS id \gset
SELECT type, body, status, payload -> 'template' AS template FROM wa_messages WHERE id = :id;
SELECT wa_send_template('tpl', '15551234567', 'welcome', 'en',
    '[{"type": "body", "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Ann"}]}]') > 0 AS queued;
SELECT wa_send_template('tpl', '15551234567', 'receipt', 'en',
    '[{"type": "header", "parameters": [{"type": "document", "document": {"id": "1234567890"}}]}]') > 0 AS queued;
SELECT wa_send_template('tpl', '15551234567', 'tracking', 'en',
    '[{"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "AB12"}]}]') > 0 AS queued;

-- Refused: unknown (the hint lists the channel's templates), not approved (with Meta's
-- reason), the wrong number of body parameters, named parameters given wrongly, what the
-- header or a button needs.
SELECT wa_send_template('tpl', '15551234567', 'order_updates', 'en_US'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'order_update', 'es'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'promo', 'en_US'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'paused_promo', 'en_US'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'order_update', 'en_US'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'order_update', 'pt_BR',
    '[{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'welcome', 'en',
    '[{"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}]'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'welcome', 'en',
    '[{"type": "body", "parameters": [{"type": "text", "parameter_name": "name", "text": "Ann"}]}]'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'receipt', 'en'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'tracking', 'en'); \echo :SQLSTATE
SELECT wa_send_template('tpl', '15551234567', 'login_code', 'en',
    '[{"type": "body", "parameters": [{"type": "text", "text": "123456"}]}]'); \echo :SQLSTATE

-- An authentication template (a one-time code) takes the channel's
-- authentication_template_ttl as its expiry unless the call gives one; none to a group.
\set login '[{"type": "body", "parameters": [{"type": "text", "text": "123456"}]}, {"type": "button", "sub_type": "copy_code", "index": "0", "parameters": [{"type": "coupon_code", "coupon_code": "123456"}]}]'
SELECT wa_send_template('tpl', '15551234567', 'login_code', 'en', :'login') AS id \gset
SELECT expires_at FROM wa_messages WHERE id = :id;
UPDATE wa_channels SET authentication_template_ttl = interval '10 minutes' WHERE name = 'tpl';
SELECT wa_send_template('tpl', '15551234567', 'login_code', 'en', :'login') AS id \gset
SELECT expires_at - created_at AS ttl FROM wa_messages WHERE id = :id;
SELECT wa_send_template('tpl', '15551234567', 'login_code', 'en', :'login',
                        expires_at => now() + interval '1 hour') AS id \gset
SELECT expires_at - created_at AS ttl FROM wa_messages WHERE id = :id;
INSERT INTO wa_groups (channel_id, group_id, subject) SELECT id, 'Z3JvdXBUZW1wbGF0ZXMwMDAwMQ', 'Team' FROM wa_channels WHERE name = 'tpl';
SELECT wa_send_template('tpl', 'Z3JvdXBUZW1wbGF0ZXMwMDAwMQ', 'login_code', 'en', :'login'); \echo :SQLSTATE

-- Marketing templates of a channel onboarded to the Marketing Messages API go through it;
-- other templates, and marketing ones to a group, still go to /messages.
UPDATE wa_channels SET marketing_messages = true WHERE name = 'tpl';
\set name_param '[{"type": "body", "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Ann"}]}]'
\set order_params '[{"type": "body", "parameters": [{"type": "text", "text": "42"}, {"type": "text", "text": "Monday"}]}]'
SELECT wa_send_template('tpl', '15551234567', 'welcome', 'en', :'name_param') AS marketing \gset
SELECT wa_send_template('tpl', '15551234567', 'order_update', 'en_US', :'order_params') AS utility \gset
SELECT wa_send_template('tpl', 'Z3JvdXBUZW1wbGF0ZXMwMDAwMQ', 'welcome', 'en', :'name_param') AS to_group \gset
SELECT body, recipient, graph_endpoint FROM wa_messages WHERE id IN (:marketing, :utility, :to_group) ORDER BY id;

-- A channel whose templates were never synced is not checked against them.
SELECT wa_send_template('tpl-unsynced', '15551234567', 'anything_at_all', 'en') > 0 AS queued;

DELETE FROM wa_channels WHERE name IN ('tpl', 'tpl-unsynced');
