-- Quoting, contact cards, scheduling, cancelling and retrying (README, "Scheduling, cancelling
-- and retrying"): what each function refuses, with its SQLSTATE, and the states a message
-- goes through. (No worker runs here: release at send_at and the sends are tested end to
-- end, tests/e2e/tests/scheduling.rs.)
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET client_min_messages = error;
SELECT regress_channel('sched', '200301');
-- A refusal, with its SQLSTATE and hint, its times and message ids written as <time> and N (they
-- change from run to run).
CREATE FUNCTION pg_temp.refused(call text) RETURNS TABLE (sqlstate text, error text, hint text)
LANGUAGE plpgsql AS $$
DECLARE
    h text;
BEGIN
    EXECUTE call;
    RETURN QUERY SELECT NULL::text, 'not refused', NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN QUERY SELECT SQLSTATE::text,
        regexp_replace(regexp_replace(SQLERRM, '[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2}(\.\d+)? \d{4} UTC', '<time>', 'g'),
                       'message \d+', 'message N', 'g'),
        h;
END
$$;
-- A customer who wrote 23 hours ago: their window is open for one more hour.
SELECT * FROM regress_customer_writes('sched', '15552223333', 'wamid.sched.in.1', 'Hi', at => now() - interval '23 hours');

-- reply_to on every kind but reactions: the request quotes the message (Meta's context), and
-- the row says which one (reply_to_wamid).
CREATE TEMP TABLE quoting AS
SELECT unnest(ARRAY[wa_send_text('sched', '15552223333', 'text', reply_to => 'wamid.sched.in.1'),
              wa_send_media('sched', '15552223333', 'image', '1234567890', reply_to => 'wamid.sched.in.1'),
              wa_send_template('sched', '15552223333', 'order_update', 'en_US', reply_to => 'wamid.sched.in.1'),
              wa_send_interactive('sched', '15552223333', '{"type": "button", "body": {"text": "?"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}',
                                  reply_to => 'wamid.sched.in.1'),
              wa_send_location('sched', '15552223333', 1, 2, reply_to => 'wamid.sched.in.1'),
              wa_send_contacts('sched', '15552223333', '[{"name": {"formatted_name": "Ann Lee", "first_name": "Ann"}}]', 'wamid.sched.in.1')]) AS id;
SELECT type, payload -> 'context' AS context, reply_to_wamid FROM wa_messages WHERE id IN (SELECT id FROM quoting) ORDER BY id;

-- wa_send_contacts: the body is the cards' names; what Meta refuses is refused here.
SELECT wa_send_contacts('sched', '15552223333',
       '[{"name": {"formatted_name": "Ann Lee", "first_name": "Ann", "last_name": "Lee"}, "phones": [{"phone": "+15557654321", "type": "WORK"}]},
         {"name": {"formatted_name": "Bo", "first_name": "Bo"}, "org": {"company": "Acme"}}]') AS cards \gset
SELECT body, shared_contacts, payload -> 'contacts' = shared_contacts AS sent_as_given FROM wa_messages WHERE id = :cards;
SELECT wa_send_contacts('sched', '15552223333', NULL); \echo :SQLSTATE
SELECT wa_send_contacts('sched', '15552223333', '{"name": {"formatted_name": "Ann", "first_name": "Ann"}}'); \echo :SQLSTATE
SELECT wa_send_contacts('sched', '15552223333', '[]'); \echo :SQLSTATE
SELECT wa_send_contacts('sched', '15552223333', '["Ann"]'); \echo :SQLSTATE
SELECT wa_send_contacts('sched', '15552223333', '[{"phones": [{"phone": "+15557654321"}]}]'); \echo :SQLSTATE
SELECT wa_send_contacts('sched', '15552223333', '[{"name": {"first_name": "Ann"}}]'); \echo :SQLSTATE
SELECT wa_send_contacts('sched', '15552223333', '[{"name": {"formatted_name": "Ann"}}]'); \echo :SQLSTATE
SELECT wa_send_contacts('sched', '15552223333', '[{"name": {"formatted_name": "Ann", "first_name": "Ann"}, "phones": "+15557654321"}]'); \echo :SQLSTATE

-- send_at: later is 'scheduled' (due at send_at, outside the queue); now or past is queued.
SELECT wa_send_text('sched', '15552223333', 'in 30 minutes', send_at => now() + interval '30 minutes') AS later \gset
SELECT status, next_attempt_at - created_at AS due_after FROM wa_messages WHERE id = :later;
SELECT wa_send_text('sched', '15552223333', 'past', send_at => now() - interval '1 hour') AS past \gset
SELECT status, next_attempt_at = created_at AS due_now FROM wa_messages WHERE id = :past;
-- The window is judged at send_at: closed by then, refused now.
\x on
SELECT * FROM pg_temp.refused('SELECT wa_send_text(''sched'', ''15552223333'', ''in 2 hours'', send_at => now() + interval ''2 hours'')');
\x off
-- A template may go any time; expires_at must come after send_at.
SELECT wa_send_template('sched', '15552223333', 'order_update', 'en_US', send_at => now() + interval '2 days') AS template \gset
SELECT status, next_attempt_at - created_at AS due_after FROM wa_messages WHERE id = :template;
\x on
SELECT * FROM pg_temp.refused('SELECT wa_send_text(''sched'', ''15552223333'', ''x'', send_at => now() + interval ''30 minutes'', expires_at => now() + interval ''10 minutes'')');
\x off

-- wa_cancel_message: a scheduled or queued message; anything else is refused, saying why.
SELECT wa_cancel_message(:later);
SELECT status, next_attempt_at FROM wa_messages WHERE id = :later;
\x on
SELECT * FROM pg_temp.refused('SELECT wa_cancel_message(' || :later || ')');
\x off
SELECT wa_send_text('sched', '15552223333', 'queued') AS queued \gset
SELECT wa_cancel_message(:queued);
SELECT status FROM wa_messages WHERE id = :queued;
SELECT wa_send_text('sched', '15552223333', 'in flight') AS sending \gset
UPDATE wa_messages SET status = 'sending' WHERE id = :sending;
\x on
SELECT * FROM pg_temp.refused('SELECT wa_cancel_message(' || :sending || ')');
\x off
UPDATE wa_messages SET status = 'sent', wamid = 'wamid.sched.out.1' WHERE id = :sending;
\x on
SELECT * FROM pg_temp.refused('SELECT wa_cancel_message(' || :sending || ')');
\x off
SELECT wa_cancel_message(987654321); \echo :SQLSTATE
SELECT wa_cancel_message(NULL); \echo :SQLSTATE
SELECT id AS inbound FROM wa_messages WHERE wamid = 'wamid.sched.in.1' \gset
\x on
SELECT * FROM pg_temp.refused('SELECT wa_cancel_message(' || :inbound || ')');
\x off

-- wa_retry_message: a failed message only; it is queued again, as a new delivery.
\x on
SELECT * FROM pg_temp.refused('SELECT wa_retry_message(' || :sending || ')');
\x off
\x on
SELECT * FROM pg_temp.refused('SELECT wa_retry_message(' || :queued || ')');
\x off
SELECT wa_send_text('sched', '15552223333', 'failed once') AS failed \gset
UPDATE wa_messages SET status = 'failed', failed_at = now(), attempts = 5, error_code = 131000, error_title = 'Something went wrong'
 WHERE id = :failed;
SELECT wa_retry_message(:failed);
SELECT status, attempts, failed_at, error_code, next_attempt_at <= now() AS due FROM wa_messages WHERE id = :failed;
\x on
SELECT * FROM pg_temp.refused('SELECT wa_retry_message(' || :failed || ')');
\x off
-- Not one that expired, nor one whose window has closed.
UPDATE wa_messages SET status = 'failed', expires_at = now() - interval '1 minute' WHERE id = :failed;
\x on
SELECT * FROM pg_temp.refused('SELECT wa_retry_message(' || :failed || ')');
\x off
UPDATE wa_messages SET expires_at = NULL WHERE id = :failed;
UPDATE wa_contacts SET blocked_at = now() WHERE wa_id = '15552223333';
\x on
SELECT * FROM pg_temp.refused('SELECT wa_retry_message(' || :failed || ')');
\x off
UPDATE wa_contacts SET blocked_at = NULL WHERE wa_id = '15552223333';
UPDATE wa_contacts SET last_inbound_at = now() - interval '2 days' WHERE wa_id = '15552223333';
\x on
SELECT * FROM pg_temp.refused('SELECT wa_retry_message(' || :failed || ')');
\x off
SELECT status FROM wa_messages WHERE id = :failed;

-- (The tests after this one count every outbound message as theirs: this channel goes.)
DELETE FROM wa_channels WHERE name = 'sched';
