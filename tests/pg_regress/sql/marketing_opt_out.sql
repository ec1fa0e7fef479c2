-- A customer who stopped marketing messages (user_preferences, the user_preference_changed
-- system message, or Meta's 131050): wa_send_template refuses them a MARKETING template with
-- the date and the way back, still sends them other templates, and an older preference event
-- never overrides a newer one. (The webhooks are applied here through the listener's own write
-- path function, as no listener runs.)
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET client_min_messages = error;
SELECT regress_channel('optout', '200010');
INSERT INTO wa_templates (channel_id, name, language, status, category, components)
SELECT c.id, t.name, 'en', 'APPROVED', t.category, t.components::jsonb
  FROM wa_channels c, (VALUES
    ('sale', 'MARKETING', '[{"type": "BODY", "text": "Sale!"}]'),
    ('receipt', 'UTILITY', '[{"type": "BODY", "text": "Your receipt."}]')) AS t(name, category, components)
 WHERE c.name = 'optout';
SELECT id AS channel_id FROM wa_channels WHERE name = 'optout' \gset

-- A stop from Meta (2025-02-12 00:43:44 UTC) for a customer never seen before: they become a
-- contact, opted out as of Meta's time.
SELECT _wa_apply_marketing_preferences(ARRAY[:channel_id]::bigint[], ARRAY['15551230001'], ARRAY[NULL], ARRAY['stop'],
                                       ARRAY[1739321024]::double precision[]) AS changed;
SELECT wa_id, marketing_opt_out_at, marketing_preference_at FROM wa_contacts WHERE channel_id = :channel_id;
SELECT wa_send_template('optout', '+1 555 123 0001', 'sale', 'en'); \echo :SQLSTATE
SELECT wa_send_template('optout', '15551230001', 'receipt', 'en') > 0 AS utility_queued;
SELECT pg_catalog.count(*) AS marketing_queued FROM wa_messages WHERE channel_id = :channel_id AND body = 'sale';

-- A resume a minute later clears it; the stop delivered again (older) changes nothing.
SELECT _wa_apply_marketing_preferences(ARRAY[:channel_id]::bigint[], ARRAY['15551230001'], ARRAY[NULL], ARRAY['resume'],
                                       ARRAY[1739321084]::double precision[]) AS changed;
SELECT _wa_apply_marketing_preferences(ARRAY[:channel_id]::bigint[], ARRAY['15551230001'], ARRAY[NULL], ARRAY['stop'],
                                       ARRAY[1739321024]::double precision[]) AS changed;
SELECT wa_id, marketing_opt_out_at, marketing_preference_at FROM wa_contacts WHERE channel_id = :channel_id;
SELECT wa_send_template('optout', '15551230001', 'sale', 'en') > 0 AS marketing_queued;

-- By BSUID alone: the customer is refused when addressed by it.
SELECT _wa_apply_marketing_preferences(ARRAY[:channel_id]::bigint[], ARRAY[NULL], ARRAY['US.13491208655302741918'], ARRAY['stop'],
                                       ARRAY[1739321100]::double precision[]) AS changed;
SELECT wa_send_template('optout', 'US.13491208655302741918', 'sale', 'en'); \echo :SQLSTATE

-- A word other than stop or resume is refused, not applied.
SELECT _wa_apply_marketing_preferences(ARRAY[:channel_id]::bigint[], ARRAY['15551230001'], ARRAY[NULL], ARRAY['interested'],
                                       ARRAY[1739321200]::double precision[]); \echo :SQLSTATE

-- Meta's 131050 on a delivery marks the customer as of the failure, with a hint.
SELECT wa_send_template('optout', '15551230002', 'sale', 'en') AS refused_id \gset
UPDATE wa_messages SET status = 'sending' WHERE id = :refused_id;
SELECT _wa_mark_failed(:refused_id, 131050, 'Unable to deliver message', 'User has stopped receiving marketing messages');
SELECT status, error_code, error_hint FROM wa_messages WHERE id = :refused_id;
SELECT k.wa_id, k.marketing_opt_out_at = m.failed_at AS opted_out_as_of_the_failure
  FROM wa_contacts k, wa_messages m WHERE k.channel_id = :channel_id AND k.wa_id = '15551230002' AND m.id = :refused_id;
-- (Its message names today's date: only the SQLSTATE here.)
\set VERBOSITY sqlstate
SELECT wa_send_template('optout', '15551230002', 'sale', 'en');
\set VERBOSITY default

DELETE FROM wa_channels WHERE name = 'optout';
