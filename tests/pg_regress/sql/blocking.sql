-- Blocking and unblocking through the action outbox (README, "Actions"): what wa_block and
-- wa_unblock refuse when queued, with SQLSTATE and hint, and the request each queues. No worker
-- runs here: Meta's answers, blocked_at and the refused sends are tested end to end
-- (tests/e2e/tests/actions.rs).
\set SHOW_CONTEXT never
SET client_min_messages = error;
SELECT regress_channel('blk', '200501');
CREATE FUNCTION pg_temp.refused(call text) RETURNS TABLE (sqlstate text, error text, hint text)
LANGUAGE plpgsql AS $$
DECLARE
    h text;
BEGIN
    EXECUTE call;
    RETURN QUERY SELECT NULL::text, 'not refused', NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN QUERY SELECT SQLSTATE::text, SQLERRM, h;
END
$$;

-- Somebody to block: not NULL, not none, no NULL among them (it is refused, not left out), each
-- a phone number or a BSUID, at most 1,000.
SELECT * FROM pg_temp.refused($$SELECT wa_block('blk', NULL)$$);
SELECT * FROM pg_temp.refused($$SELECT wa_block('blk', '{}')$$);
SELECT * FROM pg_temp.refused($$SELECT wa_block('blk', ARRAY['+15551230001', NULL])$$);
SELECT * FROM pg_temp.refused($$SELECT wa_unblock('blk', ARRAY[NULL]::text[])$$);
SELECT * FROM pg_temp.refused($$SELECT wa_block('blk', ARRAY['not a number'])$$);
SELECT * FROM pg_temp.refused($$SELECT wa_block('blk', ARRAY(SELECT '+1555' || lpad(i::text, 7, '0') FROM generate_series(1, 1001) i))$$);
SELECT * FROM pg_temp.refused($$SELECT wa_block('no_such_channel', ARRAY['+15551230001'])$$);
-- Nothing was queued by a refusal.
SELECT count(*) AS queued FROM wa_actions a JOIN wa_channels c ON c.id = a.channel_id WHERE c.name = 'blk';

-- What each queues: numbers normalised, BSUIDs as they are.
SELECT wa_block('blk', ARRAY['+1 (555) 123-0001', 'US.13491208655302741918']) > 0 AS queued;
SELECT wa_unblock('blk', ARRAY['15551230001']) > 0 AS queued;
SELECT a.kind, a.target, a.status, a.request FROM wa_actions a JOIN wa_channels c ON c.id = a.channel_id
 WHERE c.name = 'blk' ORDER BY a.id;
-- (the channel goes, so that the tests after this one see none of it)
DELETE FROM wa_channels WHERE name = 'blk';
