-- whatsapp_channel: the statuses of outbound messages (sent, delivered, read, failed), as the
-- webhook listener stores them (see sql/inbound.sql for the write path's rules).
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- Moves the outbound messages of these (channel, wamid) pairs to what their stored statuses
-- (wa_message_statuses) say: the highest-ranked status ('failed' ends it), and the time of
-- each status the message has a column for. Derived from the whole history, so the result
-- is the same whatever order and grouping the statuses arrived in. Notifies wa_status for
-- each message whose status moved; a failure with 131050 marks the customer opted out of
-- marketing. Returns how many moved.
CREATE FUNCTION _wa_apply_statuses(channels bigint[], wamids text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a batch write: see sql/plans.sql.)
AS $$
DECLARE
    moved             integer;
    refused_marketing bigint[];
BEGIN
    WITH target AS (
        SELECT m.id AS message_id, m.wamid, h.*,
               m.status <> 'failed' AND @extschema@._wa_status_rank(m.status) < @extschema@._wa_status_rank(h.top) AS moves
          FROM (SELECT DISTINCT u.ch, u.w FROM unnest(channels, wamids) AS u(ch, w)) key
         CROSS JOIN LATERAL (SELECT x.id, x.wamid, x.status FROM @extschema@.wa_messages x
                              WHERE x.channel_id = key.ch AND x.wamid = key.w AND x.direction = 'outbound' LIMIT 1) m
         CROSS JOIN LATERAL (
               SELECT (pg_catalog.array_agg(s.status ORDER BY @extschema@._wa_status_rank(s.status) DESC))[1] AS top,
                      pg_catalog.min(COALESCE(s.status_at, s.received_at)) FILTER (WHERE s.status = 'delivered') AS delivered_at,
                      pg_catalog.min(COALESCE(s.status_at, s.received_at)) FILTER (WHERE s.status = 'read') AS read_at,
                      pg_catalog.min(COALESCE(s.status_at, s.received_at)) FILTER (WHERE s.status = 'failed') AS failed_at,
                      (pg_catalog.array_agg(s.error_code) FILTER (WHERE s.status = 'failed'))[1] AS error_code,
                      (pg_catalog.array_agg(s.error_title) FILTER (WHERE s.status = 'failed'))[1] AS error_title,
                      (pg_catalog.array_agg(s.error_details) FILTER (WHERE s.status = 'failed'))[1] AS error_details,
                      (pg_catalog.array_agg(s.pricing_category ORDER BY @extschema@._wa_status_rank(s.status) DESC)
                        FILTER (WHERE s.pricing_category IS NOT NULL))[1] AS pricing_category
                 FROM @extschema@.wa_message_statuses s
                WHERE s.channel_id = key.ch AND s.wamid = key.w) h
         WHERE h.top IS NOT NULL
    ), upd AS (
        UPDATE @extschema@.wa_messages m
           SET status = CASE WHEN t.moves THEN t.top ELSE m.status END,
               delivered_at = COALESCE(m.delivered_at, t.delivered_at),
               read_at = COALESCE(m.read_at, t.read_at),
               failed_at = CASE WHEN t.moves AND t.top = 'failed' THEN t.failed_at ELSE m.failed_at END,
               error_code = CASE WHEN t.moves AND t.top = 'failed' THEN t.error_code ELSE m.error_code END,
               error_title = CASE WHEN t.moves AND t.top = 'failed' THEN t.error_title ELSE m.error_title END,
               error_details = CASE WHEN t.moves AND t.top = 'failed' THEN t.error_details ELSE m.error_details END,
               error_hint = CASE WHEN t.moves AND t.top = 'failed' THEN @extschema@.wa_error_hint(t.error_code) ELSE m.error_hint END,
               pricing_category = COALESCE(t.pricing_category, m.pricing_category),
               updated_at = pg_catalog.now()
          FROM target t
         WHERE m.id = t.message_id
           AND (t.moves OR (m.delivered_at IS NULL AND t.delivered_at IS NOT NULL) OR (m.read_at IS NULL AND t.read_at IS NOT NULL)
                OR (t.pricing_category IS NOT NULL AND t.pricing_category IS DISTINCT FROM m.pricing_category))
        RETURNING m.id, m.channel_id, t.moves, m.status, m.error_code
    )
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object(
               'id', n.id, 'channel_id', n.channel_id)::text)),
           pg_catalog.array_agg(n.id) FILTER (WHERE n.status = 'failed' AND n.error_code = 131050)
      INTO moved, refused_marketing
      FROM (SELECT upd.* FROM upd WHERE upd.moves ORDER BY upd.id) n;
    -- Meta's word that the customer stopped marketing messages (sql/inbound_preferences.sql).
    IF refused_marketing IS NOT NULL THEN
        PERFORM @extschema@._wa_note_marketing_refusals(refused_marketing);
    END IF;
    RETURN moved;
END
$$;

-- Keeps status webhooks in the history (once per wamid, status and, for a message sent to a
-- group, participant) and applies the new ones to their messages; returns how many were new.
-- A group message moves forward with its first participant's delivered or read. A status for
-- a wamid not recorded yet (the delivery worker has not recorded the send) waits in the
-- history: _wa_mark_sent applies it. A status that names its outbox row (`outbox_ids`: the
-- biz_opaque_callback_data of our sends) records the send itself when the delivery worker
-- could not (a crash between the request and its COMMIT), so that the message is not sent
-- again (see _wa_requeue_interrupted).
CREATE FUNCTION _wa_receive_statuses(channels bigint[], wamids text[], statuses text[], status_ats double precision[],
                                     recipients text[], codes integer[], titles text[], details text[], payloads jsonb[],
                                     pricing_models text[], pricing_types text[], pricing_categories text[],
                                     billables boolean[], participants text[], outbox_ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a batch write: see sql/plans.sql.)
AS $$
DECLARE
    new_channels  bigint[];
    new_wamids    text[];
    recorded_late bigint;
BEGIN
    -- Serialises with _wa_mark_sent for the same wamid: otherwise a status arriving while the
    -- send is being recorded would be seen by neither transaction and never applied. In wamid
    -- order (bytewise, as the delivery worker records sends), so the two cannot deadlock.
    PERFORM pg_catalog.count(pg_catalog.pg_advisory_xact_lock(k.lock))
       FROM (SELECT @extschema@._wa_wamid_lock(u.ch, u.w) AS lock
               FROM (SELECT DISTINCT u.ch, u.w FROM unnest(channels, wamids) AS u(ch, w)) u
              ORDER BY u.w COLLATE "C", u.ch OFFSET 0) k;
    -- Sends whose answer was never recorded, recorded from their status (by primary key; a
    -- message that has its wamid already is left alone, so this is one probe per status).
    WITH recorded AS (
        UPDATE @extschema@.wa_messages x
           SET status = 'sent', wamid = u.w, sent_at = pg_catalog.now(), next_attempt_at = NULL,
               error_code = NULL, error_title = NULL, error_details = NULL, error_hint = NULL, updated_at = pg_catalog.now()
          FROM (SELECT DISTINCT ON (u.id) u.id, u.ch, u.w FROM unnest(outbox_ids, channels, wamids) AS u(id, ch, w)
                 WHERE u.id IS NOT NULL ORDER BY u.id) u
         WHERE x.id = u.id AND x.channel_id = u.ch AND x.direction = 'outbound' AND x.wamid IS NULL
           AND x.status || '' IN ('queued', 'sending')
        RETURNING x.id, x.channel_id)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', r.id, 'channel_id', r.channel_id)::text))
      INTO recorded_late
      FROM (SELECT * FROM recorded ORDER BY id) r;
    -- A send recorded here may have held up its customer's next message (one a restart
    -- interrupted waits in the queue for this status, or for resend_interrupted_after): the
    -- delivery worker looks at the queue at COMMIT, as for a new message.
    IF recorded_late > 0 THEN
        PERFORM @extschema@._wa_wake_delivery();
    END IF;
    WITH new AS (
        INSERT INTO @extschema@.wa_message_statuses (channel_id, wamid, status, status_at, recipient_id, error_code, error_title, error_details,
                                                     pricing_model, pricing_type, pricing_category, billable, payload, participant_id)
        SELECT u.ch, u.w, u.st, @extschema@._wa_unix_time(u.ts), u.rcpt, u.code, u.title, u.det, u.pm, u.pt, u.pc, u.bill, u.pl, u.part
          FROM unnest(channels, wamids, statuses, status_ats, recipients, codes, titles, details, payloads,
                      pricing_models, pricing_types, pricing_categories, billables, participants)
               WITH ORDINALITY AS u(ch, w, st, ts, rcpt, code, title, det, pl, pm, pt, pc, bill, part, ord)
         ORDER BY u.ord
        ON CONFLICT ON CONSTRAINT wa_message_statuses_key DO NOTHING
        RETURNING channel_id, wamid
    )
    SELECT pg_catalog.array_agg(new.channel_id), pg_catalog.array_agg(new.wamid) INTO new_channels, new_wamids FROM new;
    IF new_wamids IS NULL THEN
        RETURN 0; -- all redeliveries
    END IF;
    PERFORM @extschema@._wa_apply_statuses(new_channels, new_wamids);
    RETURN pg_catalog.cardinality(new_wamids);
END
$$;
