-- whatsapp_channel: privileges. Runs last in CREATE EXTENSION (finalize), once every function
-- exists, SQL and Rust alike.

-- ---------------------------------------------------------------------------------------------
-- Privileges. Nothing is granted to PUBLIC but the pure helpers; see README, "Roles".

REVOKE ALL ON FUNCTION _wa_enqueue(text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_enqueue_target(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_wamid_lock(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_message_columns(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_text(text, text, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_media(text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_template(text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_check_template(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_template_status(bigint, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_sync_templates(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_interactive(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_location(text, text, double precision, double precision, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_send_reaction(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_mark_read(text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_set_access_token(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_counterpart(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_pause_channel(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_add_channel(text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_replay_webhook_events(bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_wake_delivery() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_wake_listener() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_identity_change(bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_count(bigint, text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_claim_media(integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_finish_media(bigint, text, text, text, bigint, bytea, text, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_requeue_media() FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_media_content(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_upload_media(text, bytea, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_message_changes(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_statuses(bigint[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_apply_user_id_updates(bigint[], text[], text[], text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_calls(bigint[], text[], text[], text[], text[], text[], text[], double precision[], double precision[], double precision[], integer[], jsonb[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_echoes(bigint[], text[], text[], text[], text[], double precision[], jsonb[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_statuses(bigint[], text[], text[], double precision[], text[], integer[], text[], text[], jsonb[], text[], text[], text[], boolean[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_receive_messages(bigint[], bigint[], text[], text[], text[], text[], text[], text[], text[], double precision[], jsonb[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_claim_due(integer, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_requeue_interrupted() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_sent(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_sent_all(bigint[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_failed(bigint, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_channel_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_outbound_conversation() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_rebuild_conversations(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_contacts_deleted() FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_unix_time(double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_queue_head(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_hold_behind(bigint, text, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_defer(bigint, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION _wa_mark_retry(bigint, double precision, integer, text, text) FROM PUBLIC;
