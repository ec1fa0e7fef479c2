-- whatsapp_channel: the model both paths share: status ranks, a message's derived columns, the wamid lock.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).
--
-- The SQL files run in this order after sql/schema.sql (see src/lib.rs): model, channels,
-- inbound, inbound_statuses, inbound_business_app, inbound_calls_groups, inbound_preferences, outbound,
-- outbound_delivery, media, views, metrics, plans, and privileges last.

-- Ordering of outbound statuses: a status is applied only if it moves the message forward;
-- 'failed' and 'cancelled' are terminal (only wa_retry_message takes a failed message back).
-- (No SET search_path: it names no object, and without it Postgres can inline it.)
CREATE FUNCTION _wa_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE status
    WHEN 'scheduled' THEN 0 WHEN 'queued' THEN 0 WHEN 'sending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
    WHEN 'read' THEN 3 WHEN 'played' THEN 4 WHEN 'failed' THEN 100 WHEN 'cancelled' THEN 100 ELSE -1 END;

-- The queryable columns of a message, derived from its type and Meta's JSON (an inbound message
-- object, or an outbound request: both carry the "<type>": {...} object). No cast here may
-- fail: a payload of an unexpected shape must still be stored. Used by every INSERT into
-- wa_messages, in the order of the columns of _wa_message_derived (sql/schema.sql).
CREATE FUNCTION _wa_message_columns(msg_type text, payload jsonb)
RETURNS SETOF @extschema@._wa_message_derived
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT
        CASE WHEN msg_type IN ('image', 'audio', 'video', 'document', 'sticker') THEN payload -> msg_type ->> 'id' END,
        CASE WHEN msg_type IN ('image', 'audio', 'video', 'document', 'sticker') THEN payload -> msg_type ->> 'mime_type' END,
        CASE WHEN msg_type IN ('image', 'audio', 'video', 'document', 'sticker') THEN payload -> msg_type ->> 'sha256' END,
        payload -> 'document' ->> 'filename',
        payload @> '{"audio": {"voice": true}}',
        CASE WHEN jsonb_typeof(payload -> 'location' -> 'latitude') = 'number' THEN (payload -> 'location' ->> 'latitude')::double precision END,
        CASE WHEN jsonb_typeof(payload -> 'location' -> 'longitude') = 'number' THEN (payload -> 'location' ->> 'longitude')::double precision END,
        payload -> 'location' ->> 'name',
        payload -> 'location' ->> 'address',
        COALESCE(payload -> 'context' ->> 'id', payload -> 'context' ->> 'message_id'),
        payload @> '{"context": {"forwarded": true}}' OR payload @> '{"context": {"frequently_forwarded": true}}',
        payload @> '{"context": {"frequently_forwarded": true}}',
        payload -> 'referral',
        payload -> 'reaction' ->> 'message_id',
        NULLIF(payload -> 'reaction' ->> 'emoji', ''),
        COALESCE(payload -> 'interactive' -> 'button_reply' ->> 'id', payload -> 'interactive' -> 'list_reply' ->> 'id'),
        payload -> 'button' ->> 'payload',
        payload -> 'order' -> 'product_items',
        CASE WHEN msg_type = 'contacts' THEN payload -> 'contacts' END,
        payload -> 'system' ->> 'type',
        COALESCE(payload -> 'revoke' ->> 'original_message_id', payload -> 'edit' ->> 'original_message_id');
END;

-- The advisory lock key of one outbound message's wamid (see _wa_receive_status).
CREATE FUNCTION _wa_wamid_lock(channel bigint, wamid text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.hashtextextended(channel::text || '/' || wamid, 0);
