-- whatsapp_channel: what a number shared with the WhatsApp Business app (coexistence) sends:
-- messages the business sent from the app (echoes), the chat history it shares, and its
-- contacts. Stored by the webhook listener (see sql/inbound.sql for the write path's rules).
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- Messages the business sent from the WhatsApp Business app on a coexistence number
-- (smb_message_echoes): stored as outbound rows of the customer's conversation, already 'sent'
-- (Meta has them), source 'business_app', deduplicated by wamid like every message. The
-- customer becomes a contact if they were not one. Notified on wa_message like inbound
-- messages (the row says direction 'outbound'), so the inbox shows both halves of the
-- conversation; statuses that came first are applied. Returns how many were new.
CREATE FUNCTION _wa_receive_echoes(channels bigint[], wamids text[], recipients text[], types text[],
                                   bodies text[], sent_ats double precision[], payloads jsonb[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a batch write: see sql/plans.sql.)
AS $$
DECLARE
    new_channels bigint[];
    new_wamids   text[];
BEGIN
    INSERT INTO @extschema@.wa_contacts (channel_id, wa_id)
    SELECT DISTINCT u.ch, u.rcpt FROM unnest(channels, recipients) AS u(ch, rcpt)
     WHERE u.rcpt IS NOT NULL
     ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    WITH new AS (
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, direction, source, wamid, type, body, status, sent_at,
                                              recipient, payload,
                                              media_id, media_mime_type, media_sha256, media_filename,
                                              voice, latitude, longitude, location_name, location_address,
                                              reply_to_wamid, forwarded, frequently_forwarded, referral,
                                              reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                              button_payload, order_items, shared_contacts, system_type,
                                              original_wamid)
        SELECT u.ch,
               (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.wa_id = u.rcpt),
               'outbound', 'business_app', u.w, u.typ, u.body, 'sent',
               COALESCE(@extschema@._wa_unix_time(u.ts), pg_catalog.now()), '+' || u.rcpt, u.pl, d.*
          FROM unnest(channels, wamids, recipients, types, bodies, sent_ats, payloads)
               WITH ORDINALITY AS u(ch, w, rcpt, typ, body, ts, pl, ord)
         CROSS JOIN LATERAL @extschema@._wa_message_columns(u.typ, u.pl) d
         ORDER BY u.ord
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING m.id, m.channel_id, m.wamid, m.type, m.contact_id
    ), notified AS (
        SELECT new.channel_id, new.wamid,
               pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
                   'id', new.id, 'channel_id', new.channel_id, 'contact_id', new.contact_id)::text)
          FROM new ORDER BY new.id
    )
    SELECT pg_catalog.array_agg(n.channel_id), pg_catalog.array_agg(n.wamid) INTO new_channels, new_wamids FROM notified n;
    IF new_wamids IS NULL THEN
        RETURN 0; -- all redeliveries
    END IF;
    PERFORM @extschema@._wa_apply_statuses(new_channels, new_wamids);
    RETURN pg_catalog.cardinality(new_wamids);
END
$$;

-- The chat history a coexistence number shared when it was onboarded (the `history` webhook):
-- the customer's messages as inbound rows, the business's as outbound rows from the business
-- app (status as history_context says), all flagged from_history, deduplicated by wamid with
-- what arrived live, so nothing is stored twice. History is in the past: it adds no unread
-- messages, and it becomes a conversation's last message only if it is newer than what the
-- conversation shows. A customer's history message within the last 24 hours still opens the
-- window, as it would have live. The media of a `media_placeholder` (sent later, same wamid)
-- fills that row in and gets a download job; that change is notified on wa_message (the row
-- says from_history). Returns how many messages were new.
CREATE FUNCTION _wa_receive_history(channels bigint[], wamids text[], customers text[], from_business boolean[],
                                    types text[], bodies text[], sent_ats double precision[], statuses text[],
                                    payloads jsonb[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a batch write: see sql/plans.sql.)
AS $$
DECLARE
    added      integer;
    media_jobs integer;
    filled_in  integer;
BEGIN
    INSERT INTO @extschema@.wa_contacts (channel_id, wa_id)
    SELECT DISTINCT u.ch, u.cust FROM unnest(channels, customers) AS u(ch, cust)
     WHERE u.cust IS NOT NULL
     ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    WITH ins AS (
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, direction, source, wamid, type, body, status, sent_at,
                                              recipient, payload, from_history,
                                              media_id, media_mime_type, media_sha256, media_filename,
                                              voice, latitude, longitude, location_name, location_address,
                                              reply_to_wamid, forwarded, frequently_forwarded, referral,
                                              reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                              button_payload, order_items, shared_contacts, system_type,
                                              original_wamid)
        SELECT u.ch,
               (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.wa_id = u.cust),
               CASE WHEN u.biz THEN 'outbound' ELSE 'inbound' END,
               CASE WHEN u.biz THEN 'business_app' END,
               u.w, u.typ, u.body,
               CASE WHEN NOT u.biz THEN 'received'
                    WHEN u.st IN ('delivered', 'read', 'played') THEN u.st
                    WHEN u.st = 'error' THEN 'failed'
                    ELSE 'sent' END,
               @extschema@._wa_unix_time(u.ts),
               CASE WHEN u.biz AND u.cust IS NOT NULL THEN '+' || u.cust END,
               u.pl, true, d.*
          FROM unnest(channels, wamids, customers, from_business, types, bodies, sent_ats, statuses, payloads)
               WITH ORDINALITY AS u(ch, w, cust, biz, typ, body, ts, st, pl, ord)
         CROSS JOIN LATERAL @extschema@._wa_message_columns(u.typ, u.pl) d
         ORDER BY u.ord
        ON CONFLICT (channel_id, wamid) DO UPDATE
           SET type = excluded.type, body = excluded.body, payload = excluded.payload,
               media_id = excluded.media_id, media_mime_type = excluded.media_mime_type,
               media_sha256 = excluded.media_sha256, media_filename = excluded.media_filename,
               voice = excluded.voice, updated_at = pg_catalog.now()
         WHERE m.type = 'media_placeholder' AND excluded.type <> 'media_placeholder'
        RETURNING m.id, m.channel_id, m.contact_id, m.direction, m.type, m.body, m.sent_at, m.media_id, m.media_mime_type,
                  m.media_sha256, (m.xmax = 0) AS inserted
    ), media AS (
        INSERT INTO @extschema@.wa_media (message_id, channel_id, media_id, mime_type, expected_sha256)
        SELECT ins.id, ins.channel_id, ins.media_id, ins.media_mime_type, ins.media_sha256 FROM ins WHERE ins.media_id IS NOT NULL
        ON CONFLICT (message_id) DO NOTHING
        RETURNING 1
    ), conversations AS (
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, contact_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT n.channel_id, n.contact_id, n.id, COALESCE(n.sent_at, pg_catalog.now()), n.direction, n.type,
               pg_catalog.left(n.body, 200), 0
          FROM (SELECT DISTINCT ON (ins.contact_id) ins.* FROM ins WHERE ins.inserted AND ins.contact_id IS NOT NULL
                 ORDER BY ins.contact_id, ins.sent_at DESC NULLS LAST, ins.id DESC) n
         ORDER BY n.contact_id
        ON CONFLICT (channel_id, contact_id) DO UPDATE
           SET last_message_id = excluded.last_message_id, last_message_at = excluded.last_message_at,
               last_direction = excluded.last_direction, last_type = excluded.last_type, last_preview = excluded.last_preview
         WHERE excluded.last_message_at > s.last_message_at
    ), windows AS (
        UPDATE @extschema@.wa_contacts k
           SET last_inbound_at = w.seen, updated_at = pg_catalog.now()
          FROM (SELECT ins.contact_id, pg_catalog.max(ins.sent_at) AS seen FROM ins
                 WHERE ins.inserted AND ins.direction = 'inbound' AND ins.contact_id IS NOT NULL AND ins.sent_at IS NOT NULL
                 GROUP BY ins.contact_id) w
         WHERE k.id = w.contact_id AND (k.last_inbound_at IS NULL OR k.last_inbound_at < w.seen)
    )
    SELECT pg_catalog.count(*) FILTER (WHERE n.inserted),
           (SELECT pg_catalog.count(*) FROM media),
           pg_catalog.count(pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
               'id', n.id, 'channel_id', n.channel_id, 'contact_id', n.contact_id)::text)) FILTER (WHERE NOT n.inserted)
      INTO added, media_jobs, filled_in
      FROM (SELECT ins.* FROM ins ORDER BY ins.id) n;
    IF media_jobs > 0 THEN
        PERFORM @extschema@._wa_wake_media(); -- the delivery worker downloads media too
    END IF;
    RETURN added;
END
$$;

-- One chunk of a history sync arrived (or the business declined to share its history): counted
-- for wa_channel_health (kinds history_chunk, history_declined; the detail says how far it is)
-- and notified on wa_history ({"channel_id"}), so an inbox can show the sync's progress: it
-- reads the channel's latest history_chunk or history_declined from wa_channel_health (100%:
-- complete).
CREATE FUNCTION _wa_history_chunk(channel bigint, phase integer, chunk_order integer, progress integer,
                                  messages integer, error_code integer, error text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._wa_count(channel, CASE WHEN error_code IS NULL THEN 'history_chunk' ELSE 'history_declined' END,
                                  CASE WHEN error_code IS NULL
                                       THEN pg_catalog.format('phase %s, chunk %s, %s%%, %s messages', phase, chunk_order, progress, messages)
                                       ELSE pg_catalog.format('error %s: %s', error_code, error) END);
    PERFORM pg_catalog.pg_notify('wa_history', pg_catalog.json_build_object('channel_id', channel)::text);
END
$$;

-- Contacts the business saved in or removed from the WhatsApp Business app of a coexistence
-- number (smb_app_state_sync): a saved contact becomes a contact of the channel with its
-- saved_name; a removed one keeps its history and loses the name. In order, one by one: these
-- come once at onboarding and then one at a time.
CREATE FUNCTION _wa_apply_contact_syncs(channels bigint[], wa_ids text[], names text[], actions text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       record;
    changed integer := 0;
BEGIN
    FOR r IN SELECT * FROM unnest(channels, wa_ids, names, actions) WITH ORDINALITY AS u(ch, wa, nm, act, ord)
              ORDER BY u.ord LOOP
        IF r.act = 'remove' THEN
            UPDATE @extschema@.wa_contacts k SET saved_name = NULL, updated_at = pg_catalog.now()
             WHERE k.channel_id = r.ch AND k.wa_id = r.wa AND k.saved_name IS NOT NULL;
        ELSE
            INSERT INTO @extschema@.wa_contacts AS k (channel_id, wa_id, saved_name) VALUES (r.ch, r.wa, r.nm)
            ON CONFLICT (channel_id, wa_id) WHERE wa_id IS NOT NULL DO UPDATE SET saved_name = excluded.saved_name, updated_at = pg_catalog.now()
             WHERE k.saved_name IS DISTINCT FROM excluded.saved_name;
        END IF;
        IF FOUND THEN
            changed := changed + 1;
        END IF;
    END LOOP;
    RETURN changed;
END
$$;
