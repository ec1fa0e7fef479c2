-- Groups through the action outbox (README, "Actions"): what each group function refuses when
-- queued, with its SQLSTATE and hint, and the request each queues (kind, target, Graph API
-- body). No worker runs here: the requests reaching wa-sim and Meta's answers are tested end
-- to end (tests/e2e/tests/actions.rs).
\set SHOW_CONTEXT never
SET client_min_messages = error;
SELECT regress_channel('grp', '200401');
-- A group the channel knows (its group_create webhook would have added it).
INSERT INTO wa_groups (channel_id, group_id, subject) SELECT id, 'GRPREGRESS1', 'Team' FROM wa_channels WHERE name = 'grp';
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

-- A creation: a subject is required, 1 to 128 characters once trimmed; a description at most 2,048.
SELECT * FROM pg_temp.refused($$SELECT wa_create_group('grp', NULL)$$);
SELECT * FROM pg_temp.refused($$SELECT wa_create_group('grp', '   ')$$);
SELECT * FROM pg_temp.refused($$SELECT wa_create_group('grp', repeat('x', 129))$$);
SELECT * FROM pg_temp.refused($$SELECT wa_create_group('grp', 'Team', repeat('d', 2049))$$);
SELECT * FROM pg_temp.refused($$SELECT wa_create_group('grp', 'Team', join_approval_required => NULL)$$);
SELECT * FROM pg_temp.refused($$SELECT wa_create_group('no_such_channel', 'Team')$$);
-- The group must be one the channel knows.
SELECT * FROM pg_temp.refused($$SELECT wa_get_group_invite_link('grp', 'NOPE')$$);
SELECT * FROM pg_temp.refused($$SELECT wa_reset_group_invite_link('grp', NULL)$$);
SELECT * FROM pg_temp.refused($$SELECT wa_list_group_join_requests('grp', 'NOPE')$$);
-- Join request ids: at least one, none empty, none twice.
SELECT * FROM pg_temp.refused($$SELECT wa_approve_group_join_requests('grp', 'GRPREGRESS1', '{}')$$);
SELECT * FROM pg_temp.refused($$SELECT wa_approve_group_join_requests('grp', 'GRPREGRESS1', NULL)$$);
SELECT * FROM pg_temp.refused($$SELECT wa_reject_group_join_requests('grp', 'GRPREGRESS1', ARRAY[''])$$);
SELECT * FROM pg_temp.refused($$SELECT wa_reject_group_join_requests('grp', 'GRPREGRESS1', ARRAY['J1', NULL])$$);
SELECT * FROM pg_temp.refused($$SELECT wa_reject_group_join_requests('grp', 'GRPREGRESS1', ARRAY['J1', 'J1'])$$);
-- Participants: 1 to 8 phone numbers or BSUIDs, none twice.
SELECT * FROM pg_temp.refused($$SELECT wa_remove_group_participants('grp', 'GRPREGRESS1', '{}')$$);
SELECT * FROM pg_temp.refused($$SELECT wa_remove_group_participants('grp', 'GRPREGRESS1', ARRAY(SELECT '+1555000000' || i FROM generate_series(1, 9) i))$$);
SELECT * FROM pg_temp.refused($$SELECT wa_remove_group_participants('grp', 'GRPREGRESS1', ARRAY['not a number'])$$);
SELECT * FROM pg_temp.refused($$SELECT wa_remove_group_participants('grp', 'GRPREGRESS1', ARRAY['+1 555 123 4567', '15551234567'])$$);
-- Nothing was queued by a refusal.
SELECT count(*) AS queued FROM wa_actions a JOIN wa_channels c ON c.id = a.channel_id WHERE c.name = 'grp';
-- When the delivery worker looks for actions next: not at all while none is queued (NULL; a 0
-- would make it read wa_actions at every turn of its loop).
SELECT _wa_next_action_due_in() IS NULL AS none_to_look_for;

-- What each queues, performed by the delivery worker after COMMIT.
SELECT wa_create_group('grp', '  Launch team ', 'For the launch', join_approval_required => true) > 0 AS queued;
SELECT wa_create_group('grp', 'Open team') > 0 AS queued;
SELECT wa_get_group_invite_link('grp', 'GRPREGRESS1') > 0 AS queued;
SELECT wa_reset_group_invite_link('grp', 'GRPREGRESS1') > 0 AS queued;
SELECT wa_list_group_join_requests('grp', 'GRPREGRESS1') > 0 AS queued;
SELECT wa_approve_group_join_requests('grp', 'GRPREGRESS1', ARRAY['J1', 'J2']) > 0 AS queued;
SELECT wa_reject_group_join_requests('grp', 'GRPREGRESS1', ARRAY['J3']) > 0 AS queued;
SELECT wa_remove_group_participants('grp', 'GRPREGRESS1', ARRAY['+1 (555) 123-4567', 'US.13491208655302741918']) > 0 AS queued;
SELECT a.kind, a.target, a.status, a.request FROM wa_actions a JOIN wa_channels c ON c.id = a.channel_id
 WHERE c.name = 'grp' ORDER BY a.id;
-- Due now: the worker looks at its next turn.
SELECT _wa_next_action_due_in() <= 0 AS due_now;
-- (the channel goes, so that the tests after this one see none of it)
DELETE FROM wa_channels WHERE name = 'grp';
