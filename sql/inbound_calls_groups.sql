-- whatsapp_channel: calls and groups, as the webhook listener stores their events (see
-- sql/inbound.sql for the write path's rules).
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- Call events (connect, terminate) into wa_calls, one row per call, and each event as it came
-- into wa_call_events. The customer (the caller of
-- their own call, the callee of the business's) becomes a contact if needed, and their call
-- opens or extends the 24-hour window, as a message does. Each change is notified on wa_call
-- ({"id", "channel_id", "contact_id"}: the row says the rest); a redelivered event changes
-- nothing and is not notified again, and a late `connect` never reopens an ended call. In order, one by one: calls are few. Returns how many rows changed.
CREATE FUNCTION _wa_receive_calls(channels bigint[], call_ids text[], froms text[], tos text[], events text[],
                                  directions text[], statuses text[], ats double precision[],
                                  starts double precision[], ends double precision[], durations integer[],
                                  payloads jsonb[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        record;
    customer text;
    k        bigint;
    c        @extschema@.wa_calls;
    event_at timestamptz;
    changed  integer := 0;
BEGIN
    FOR r IN SELECT * FROM unnest(channels, call_ids, froms, tos, events, directions, statuses, ats, starts, ends,
                                  durations, payloads) WITH ORDINALITY
                           AS u(ch, cid, frm, callee, ev, dir, st, ts, t0, t1, dur, pl, ord)
              ORDER BY u.ord LOOP
        customer := CASE WHEN r.dir = 'BUSINESS_INITIATED' THEN r.callee ELSE r.frm END;
        event_at := COALESCE(@extschema@._wa_unix_time(r.ts), pg_catalog.now());
        k := NULL;
        IF customer IS NOT NULL THEN
            INSERT INTO @extschema@.wa_contacts (channel_id, wa_id) VALUES (r.ch, customer) ON CONFLICT DO NOTHING;
            SELECT x.id INTO k FROM @extschema@.wa_contacts x WHERE x.channel_id = r.ch AND x.wa_id = customer;
            IF r.dir IS DISTINCT FROM 'BUSINESS_INITIATED' THEN
                UPDATE @extschema@.wa_contacts x SET last_inbound_at = event_at, updated_at = pg_catalog.now()
                 WHERE x.id = k AND (x.last_inbound_at IS NULL OR x.last_inbound_at < event_at);
            END IF;
        END IF;
        -- Every event is kept as Meta sent it (the connect event's SDP offer too), once.
        INSERT INTO @extschema@.wa_call_events (channel_id, call_id, event, event_at, payload)
        VALUES (r.ch, r.cid, COALESCE(r.ev, 'unknown'), event_at, r.pl)
        ON CONFLICT DO NOTHING;
        INSERT INTO @extschema@.wa_calls AS w (channel_id, call_id, contact_id, direction, status, missed, rang_at,
                                              started_at, ended_at, duration_seconds, payload)
        VALUES (r.ch, r.cid, k,
                CASE r.dir WHEN 'USER_INITIATED' THEN 'inbound' WHEN 'BUSINESS_INITIATED' THEN 'outbound' END,
                CASE WHEN r.ev = 'terminate' THEN pg_catalog.lower(COALESCE(r.st, 'ended')) ELSE 'ringing' END,
                r.ev = 'terminate' AND r.dir IS DISTINCT FROM 'BUSINESS_INITIATED' AND r.t0 IS NULL AND COALESCE(r.dur, 0) = 0,
                CASE WHEN r.ev = 'connect' THEN event_at END,
                @extschema@._wa_unix_time(r.t0), @extschema@._wa_unix_time(r.t1), r.dur, r.pl)
        ON CONFLICT (channel_id, call_id) DO UPDATE
           SET status = CASE WHEN excluded.status = 'ringing' THEN w.status ELSE excluded.status END,
               missed = CASE WHEN excluded.status = 'ringing' THEN w.missed ELSE excluded.missed END,
               contact_id = COALESCE(w.contact_id, excluded.contact_id),
               direction = COALESCE(w.direction, excluded.direction),
               rang_at = COALESCE(w.rang_at, excluded.rang_at),
               started_at = COALESCE(excluded.started_at, w.started_at),
               ended_at = COALESCE(excluded.ended_at, w.ended_at),
               duration_seconds = COALESCE(excluded.duration_seconds, w.duration_seconds),
               payload = CASE WHEN excluded.status = 'ringing' THEN w.payload ELSE excluded.payload END,
               updated_at = pg_catalog.now()
         WHERE (w.status, w.missed, w.rang_at, w.started_at, w.ended_at, w.duration_seconds)
               IS DISTINCT FROM
               (CASE WHEN excluded.status = 'ringing' THEN w.status ELSE excluded.status END,
                CASE WHEN excluded.status = 'ringing' THEN w.missed ELSE excluded.missed END,
                COALESCE(w.rang_at, excluded.rang_at), COALESCE(excluded.started_at, w.started_at),
                COALESCE(excluded.ended_at, w.ended_at), COALESCE(excluded.duration_seconds, w.duration_seconds))
        RETURNING * INTO c;
        CONTINUE WHEN NOT FOUND; -- a redelivery
        PERFORM pg_catalog.pg_notify('wa_call', pg_catalog.json_build_object(
            'id', c.id, 'channel_id', c.channel_id, 'contact_id', c.contact_id)::text);
        changed := changed + 1;
    END LOOP;
    RETURN changed;
END
$$;

-- Events of the Groups API's webhooks (value.groups[]) into wa_groups, in order: lifecycle
-- (created, or failed to be, with the request id of the wa_create_group() behind it; deleted),
-- participants who joined or left, settings (subject, description) and Meta's suspensions. A lifecycle or status event older than the one that set
-- the group's status does not undo it (webhooks are not ordered). Each change is notified on
-- wa_group ({"channel_id"}: wa_groups has no numeric id, so the reader re-reads the channel's
-- groups, newest updated_at first); an event that changes nothing (a redelivery) is not
-- written or notified again. Returns how many groups changed.
CREATE FUNCTION _wa_receive_group_events(channels bigint[], group_ids text[], kinds text[], ats double precision[],
                                         subjects text[], descriptions text[], invite_links text[],
                                         approval_modes text[], added jsonb[], removed jsonb[], failed boolean[],
                                         payloads jsonb[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r          record;
    g          @extschema@.wa_groups;
    n          @extschema@.wa_groups;
    event_at   timestamptz;
    new_status text;
    is_new     boolean;
    changed    integer := 0;
BEGIN
    FOR r IN SELECT * FROM unnest(channels, group_ids, kinds, ats, subjects, descriptions, invite_links, approval_modes,
                                  added, removed, failed, payloads) WITH ORDINALITY
                           AS u(ch, gid, kind, ts, subj, descr, link, mode, plus, minus, failed, pl, ord)
              ORDER BY u.ord LOOP
        event_at := COALESCE(@extschema@._wa_unix_time(r.ts), pg_catalog.now());
        new_status := CASE WHEN r.kind = 'group_create' THEN CASE WHEN r.failed THEN 'create_failed' ELSE 'active' END
                           WHEN r.kind = 'group_delete' AND NOT r.failed THEN 'deleted'
                           WHEN r.kind = 'group_suspend' THEN 'suspended'
                           WHEN r.kind = 'group_suspend_cleared' THEN 'active' END;
        INSERT INTO @extschema@.wa_groups (channel_id, group_id) VALUES (r.ch, r.gid) ON CONFLICT DO NOTHING;
        is_new := FOUND;
        SELECT * INTO g FROM @extschema@.wa_groups x WHERE x.channel_id = r.ch AND x.group_id = r.gid FOR UPDATE;
        n := g;
        n.subject := COALESCE(r.subj, g.subject);
        n.description := COALESCE(r.descr, g.description);
        -- (a group_create webhook brings the group's first link; one reset since, taken from Meta's
        -- answer, is newer, and a redelivered group_create must not bring the old one back)
        n.invite_link := COALESCE(g.invite_link, r.link);
        n.join_approval_mode := COALESCE(r.mode, g.join_approval_mode);
        IF r.kind = 'group_create' THEN
            n.create_request_id := COALESCE(r.pl ->> 'request_id', g.create_request_id);
        END IF;
        IF new_status IS NOT NULL AND (g.status_at IS NULL OR event_at >= g.status_at) THEN
            n.status := new_status;
            n.status_at := event_at;
        END IF;
        n.participants := @extschema@._wa_group_participants(
            g.participants,
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(r.plus, '[]'))),
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(r.minus, '[]'))));
        -- A redelivered event (or one that changes nothing) is not written or notified again.
        CONTINUE WHEN NOT is_new
                  AND (n.subject, n.description, n.invite_link, n.join_approval_mode, n.status, n.status_at, n.participants,
                       n.create_request_id)
                      IS NOT DISTINCT FROM
                      (g.subject, g.description, g.invite_link, g.join_approval_mode, g.status, g.status_at, g.participants,
                       g.create_request_id);
        UPDATE @extschema@.wa_groups x
           SET subject = n.subject, description = n.description, invite_link = n.invite_link,
               join_approval_mode = n.join_approval_mode, status = n.status, status_at = n.status_at,
               participants = n.participants, create_request_id = n.create_request_id, last_event = r.pl,
               updated_at = pg_catalog.now()
         WHERE x.channel_id = r.ch AND x.group_id = r.gid;
        PERFORM pg_catalog.pg_notify('wa_group', pg_catalog.json_build_object('channel_id', r.ch)::text);
        changed := changed + 1;
    END LOOP;
    RETURN changed;
END
$$;

-- The same for a group: a deleted group (or a channel, whose groups cascade) takes its
-- conversation.
CREATE FUNCTION _wa_groups_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.wa_conversation_state s USING gone WHERE s.channel_id = gone.channel_id AND s.group_id = gone.group_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER wa_groups_deleted AFTER DELETE ON wa_groups
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION _wa_groups_deleted();
