-- whatsapp_channel: the views inbox apps read.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- ---------------------------------------------------------------------------------------------
-- Views for inbox apps. Each runs with the rights of the role that reads it
-- (security_invoker), so row-level security shows a role the rows of its own channels only,
-- and a DBA's own policies apply too; a reader needs SELECT on the tables the view reads.

-- One row per conversation (a channel and a contact, or a channel and a group): the last
-- message, how many inbound messages came since the business last wrote or marked them read
-- (unread), and when the 24-hour customer-service window closes (only a message from the
-- customer, or in a group from any participant, opens or extends it; outside it only templates
-- may be sent). A group's row has group_id and group_subject set and no contact. Read from
-- wa_conversation_state, which every message keeps current, so the inbox's list (WHERE
-- channel_id = $1 ORDER BY last_message_at DESC NULLS LAST LIMIT 50) is an index scan however
-- many conversations there are, with or without the channel filter.
CREATE VIEW wa_conversations WITH (security_invoker = true) AS
SELECT s.channel_id, c.name AS channel, s.contact_id, k.wa_id, k.user_id, k.profile_name, k.username,
       s.last_message_id, s.last_direction, s.last_type, s.last_preview AS last_body,
       s.last_message_at, s.unread_count,
       COALESCE(k.last_inbound_at, g.last_inbound_at) AS last_customer_message_at,
       COALESCE(k.last_inbound_at, g.last_inbound_at) + interval '24 hours' AS window_closes_at,
       COALESCE(COALESCE(k.last_inbound_at, g.last_inbound_at) + interval '24 hours' > pg_catalog.now(), false) AS window_open,
       s.id AS conversation_id,
       s.group_id, g.subject AS group_subject, g.status AS group_status, k.saved_name,
       -- (wa_send_template refuses marketing templates to the contact while it is set.)
       k.marketing_opt_out_at
  FROM @extschema@.wa_conversation_state s
  JOIN @extschema@.wa_channels c ON c.id = s.channel_id
  LEFT JOIN @extschema@.wa_contacts k ON k.id = s.contact_id
  LEFT JOIN @extschema@.wa_groups g ON g.channel_id = s.channel_id AND g.group_id = s.group_id;

-- Rebuilds wa_conversation_state from wa_messages (for an upgrade from a version that did not
-- keep it, or after rows were changed by hand): the same result as the incremental updates.
-- A contact's conversation is their 1:1 messages; a group's is the messages with its group_id.
-- History shared by a coexistence number counts by when it was sent and adds no unread.
CREATE FUNCTION _wa_rebuild_conversations(channel bigint DEFAULT NULL) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    DELETE FROM @extschema@.wa_conversation_state s WHERE _wa_rebuild_conversations.channel IS NULL OR s.channel_id = _wa_rebuild_conversations.channel;
    WITH rebuilt AS (
        INSERT INTO @extschema@.wa_conversation_state
               (channel_id, contact_id, group_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT k.channel_id, k.id, NULL, last.id, last.shown_at, last.direction, last.type, pg_catalog.left(last.body, 200),
               (SELECT pg_catalog.count(*) FROM @extschema@.wa_messages i
                 WHERE i.contact_id = k.id AND i.group_id IS NULL AND i.direction = 'inbound' AND NOT i.from_history
                   AND i.id > COALESCE((SELECT pg_catalog.max(o.id) FROM @extschema@.wa_messages o
                                         WHERE o.contact_id = k.id AND o.group_id IS NULL AND o.direction = 'outbound'
                                           AND NOT o.from_history), 0))
          FROM @extschema@.wa_contacts k
          JOIN LATERAL (SELECT m.id, CASE WHEN m.from_history THEN COALESCE(m.sent_at, m.created_at) ELSE m.created_at END AS shown_at,
                               m.direction, m.type, m.body
                          FROM @extschema@.wa_messages m
                         WHERE m.contact_id = k.id AND m.group_id IS NULL AND m.type <> 'mark_read'
                         ORDER BY shown_at DESC, m.id DESC
                         LIMIT 1) last ON true
         WHERE _wa_rebuild_conversations.channel IS NULL OR k.channel_id = _wa_rebuild_conversations.channel
        UNION ALL
        SELECT g.channel_id, NULL, g.group_id, last.id, last.created_at, last.direction, last.type, pg_catalog.left(last.body, 200),
               (SELECT pg_catalog.count(*) FROM @extschema@.wa_messages i
                 WHERE i.channel_id = g.channel_id AND i.group_id = g.group_id AND i.direction = 'inbound'
                   AND i.id > COALESCE((SELECT pg_catalog.max(o.id) FROM @extschema@.wa_messages o
                                         WHERE o.channel_id = g.channel_id AND o.group_id = g.group_id
                                           AND o.direction = 'outbound'), 0))
          FROM @extschema@.wa_groups g
          JOIN LATERAL (SELECT m.id, m.created_at, m.direction, m.type, m.body FROM @extschema@.wa_messages m
                         WHERE m.channel_id = g.channel_id AND m.group_id = g.group_id
                         ORDER BY m.id DESC LIMIT 1) last ON true
         WHERE _wa_rebuild_conversations.channel IS NULL OR g.channel_id = _wa_rebuild_conversations.channel
        RETURNING 1)
    SELECT pg_catalog.count(*) FROM rebuilt;
END;

-- One row per channel, answering the seed's "Common issues": is Meta reaching us, with the
-- right secret and token, and is anything failing on the way out?
CREATE VIEW wa_channel_health WITH (security_invoker = true) AS
SELECT c.id AS channel_id, c.name AS channel, c.phone_number_id, c.enabled,
       c.paused_at AS outbox_paused_at, c.paused_reason AS outbox_paused_reason,
       (SELECT k.last_at FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'verified') AS last_verified_handshake_at,
       (SELECT max(k.last_at) FROM @extschema@.wa_channel_counters k
         WHERE k.channel_id = c.id AND k.kind IN ('stored', 'partial', 'incomplete', 'invalid_payload')) AS last_verified_post_at,
       (SELECT k.last_at FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'signature_mismatch') AS last_signature_failure_at,
       (SELECT k.last_detail FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'signature_mismatch') AS last_signature_failure_cause,
       (SELECT k.last_at FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'verify_token_mismatch') AS last_verify_token_mismatch_at,
       (SELECT k.last_at FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'unrouted') AS last_unrouted_at,
       (SELECT k.last_detail FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id AND k.kind = 'unrouted') AS last_unrouted_phone_number_id,
       COALESCE((SELECT pg_catalog.jsonb_object_agg(k.kind, k.count) FROM @extschema@.wa_channel_counters k WHERE k.channel_id = c.id), '{}') AS counts,
       (SELECT count(*) FROM @extschema@.wa_messages m WHERE m.channel_id = c.id AND m.status IN ('queued', 'sending')) AS outbox_queued,
       (SELECT max(m.failed_at) FROM @extschema@.wa_messages m WHERE m.channel_id = c.id AND m.status = 'failed') AS last_send_failure_at,
       (SELECT m.error_hint FROM @extschema@.wa_messages m WHERE m.channel_id = c.id AND m.status = 'failed'
         ORDER BY m.failed_at DESC NULLS LAST LIMIT 1) AS last_send_failure_hint,
       -- Webhook POSTs with items not stored yet for a database reason (answered 500; kept,
       -- and replayed every minute until they are: see the server log for why).
       (SELECT count(*) FROM @extschema@.wa_webhook_events e WHERE e.channel_id = c.id AND e.outcome = 'incomplete') AS incomplete_webhook_events,
       -- Since when the Graph API has answered this channel's sends with nothing but transport
       -- errors and 5xx (NULL: it answers): its queue waits and probes, nothing fails for it.
       c.unreachable_since AS graph_api_unreachable_since,
       -- What Meta last said about the number and its account (wa_channel_events: the latest
       -- event, by Meta's time, that stated each; see README, "Channel and account health").
       (SELECT e.facts ->> 'quality_rating' FROM @extschema@.wa_channel_events e
         WHERE e.channel_id = c.id AND e.facts ? 'quality_rating' ORDER BY e.event_at DESC, e.id DESC LIMIT 1) AS quality_rating,
       (SELECT e.facts ->> 'messaging_limit' FROM @extschema@.wa_channel_events e
         WHERE e.channel_id = c.id AND e.facts ? 'messaging_limit' ORDER BY e.event_at DESC, e.id DESC LIMIT 1) AS messaging_limit,
       (SELECT (e.facts ->> 'throughput')::integer FROM @extschema@.wa_channel_events e
         WHERE e.channel_id = c.id AND e.facts ? 'throughput' ORDER BY e.event_at DESC, e.id DESC LIMIT 1) AS throughput,
       (SELECT e.facts ->> 'account_status' FROM @extschema@.wa_channel_events e
         WHERE e.channel_id = c.id AND e.facts ? 'account_status' ORDER BY e.event_at DESC, e.id DESC LIMIT 1) AS account_status,
       (SELECT e.facts ->> 'account_event' FROM @extschema@.wa_channel_events e
         WHERE e.channel_id = c.id AND e.facts ? 'account_event' ORDER BY e.event_at DESC, e.id DESC LIMIT 1) AS account_event,
       (SELECT e.event_at FROM @extschema@.wa_channel_events e
         WHERE e.channel_id = c.id AND e.facts ? 'account_event' ORDER BY e.event_at DESC, e.id DESC LIMIT 1) AS account_event_at,
       (SELECT e.facts ->> 'display_name_status' FROM @extschema@.wa_channel_events e
         WHERE e.channel_id = c.id AND e.facts ? 'display_name_status' ORDER BY e.event_at DESC, e.id DESC LIMIT 1) AS display_name_status,
       -- Webhook fields this version does not understand, per field: how many events (each kept
       -- raw in wa_webhook_events until it is replayed or its retention passes).
       COALESCE((SELECT pg_catalog.jsonb_object_agg(u.field, u.events)
                   FROM (SELECT e.field, pg_catalog.count(*) AS events FROM @extschema@.wa_channel_events e
                          WHERE e.channel_id = c.id AND e.kind = 'unknown_field' GROUP BY e.field) u), '{}') AS unknown_fields
  FROM @extschema@.wa_channels c;

-- What Meta charges, per channel, day (UTC), category and type: each outbound message once,
-- as its first status that carried pricing says (Meta repeats it on one of delivered/read).
-- billable_messages are the ones to multiply by Meta's rate card for the category and the
-- recipient's country; Meta deprecates `billable`, so under per-message pricing (PMP)
-- type 'regular' counts as billable when it is absent.
CREATE VIEW wa_message_costs WITH (security_invoker = true) AS
SELECT p.channel_id, c.name AS channel,
       (COALESCE(p.status_at, p.received_at) AT TIME ZONE 'UTC')::date AS day,
       p.pricing_category AS category, p.pricing_type AS type, p.pricing_model AS model,
       pg_catalog.count(*) AS messages,
       pg_catalog.count(*) FILTER (WHERE COALESCE(p.billable, p.pricing_type = 'regular')) AS billable_messages
  FROM (SELECT DISTINCT ON (s.channel_id, s.wamid) s.channel_id, s.wamid, s.status_at, s.received_at,
               s.pricing_category, s.pricing_type, s.pricing_model, s.billable
          FROM @extschema@.wa_message_statuses s
         WHERE s.pricing_category IS NOT NULL
         ORDER BY s.channel_id, s.wamid, COALESCE(s.status_at, s.received_at)) p
  JOIN @extschema@.wa_channels c ON c.id = p.channel_id
 GROUP BY 1, 2, 3, 4, 5, 6;
