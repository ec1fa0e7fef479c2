-- whatsapp_channel: the inbound store, called by the webhook listener (and by replay).
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- ---------------------------------------------------------------------------------------------
-- Store procedures for the webhook listener
--
-- One write path per kind of data: _wa_receive_messages() stores messages of every kind and
-- _wa_receive_statuses() stores statuses, each for a whole batch of webhooks in a few
-- set-based statements. When a batch fails, the listener calls the same functions again with
-- one item each, in a subtransaction per item. Every lookup is by a unique or primary key
-- (as a scalar subquery or an aggregated LATERAL, which the planner cannot turn into a scan of
-- a large table), so storing a message costs the same on a year of traffic as on an empty
-- database. The result does not depend on how items were grouped: statuses are applied by
-- rank whatever order they arrive in, and an edit or revoke that arrives before its message
-- is applied when the message comes.

-- Meta's unix timestamp as a timestamptz; NULL for one no timestamptz can hold (the raw
-- payload keeps it): a signed message is never refused for its timestamp.
CREATE FUNCTION _wa_unix_time(ts double precision) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN ts >= 0 AND ts < 253402300800 THEN pg_catalog.to_timestamp(ts) END;

-- When a message opens (or extends) its sender's 24-hour window, Meta's time or else now: a
-- system notice is not the customer writing and opens none (NULL). (No SET search_path: its
-- body is bound to _wa_unix_time when it is created, and without one Postgres inlines it into
-- the statements that aggregate it.)
CREATE FUNCTION _wa_window_opened_at(msg_type text, ts double precision) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN msg_type <> 'system' THEN COALESCE(@extschema@._wa_unix_time(ts), pg_catalog.now()) END;

-- A group's participants once `joined` came and `gone` left: a sorted set of WhatsApp ids. (For
-- the group's webhooks and for the messages that show who writes in it.)
CREATE FUNCTION _wa_group_participants(had text[], joined text[], gone text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(SELECT DISTINCT p FROM unnest(had || joined) AS p WHERE p <> ALL (gone) ORDER BY p);

-- Stores inbound messages of every kind, one row per element of the arrays (in order).
-- Contacts are found or created (by WhatsApp id, else by BSUID) and kept current; each new
-- message gets its derived columns, a media download job if it has media, its conversation
-- moved forward and a wa_message notification. A message written in a group (group_ids) goes
-- to the group's conversation, not the writer's, and opens the group's 24-hour window, not
-- theirs; a group first seen in a message is added to wa_groups. A redelivered wamid adds
-- nothing. A structured reply (a Flow's answers, an address, a call permission) comes with its
-- answers parsed (flow_responses) and its Flow's token, and a short summary as its body. An
-- identity change (a system message) is applied after the other rows of the call:
-- the listener ends a call after each one, so that later messages see it. Returns how many
-- messages were new.
CREATE FUNCTION _wa_receive_messages(
    channels bigint[], events bigint[], wamids text[], froms text[], from_user_ids text[], names text[], usernames text[],
    types text[], bodies text[], sent_ats double precision[], payloads jsonb[], group_ids text[],
    flow_responses jsonb[], flow_tokens text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a batch write: see sql/plans.sql.)
AS $$
DECLARE
    -- Each message's contact, in the order of the arrays (NULL: none yet, or no sender id).
    -- Arrays rather than a staging table: a temporary table is truncated at every commit,
    -- a tenth of the listener's time (perf).
    contacts   bigint[] := '{}';
    -- Whether a message with a sender id has no contact yet (step 1).
    unknown    boolean;
    added      integer;
    with_media bigint[];
    in_groups  bigint[];
    changed    bigint[];
BEGIN
    -- In steps, each one statement for the whole batch. (Steps rather than a function each:
    -- every call of one would be one more executor start per batch on the listener's hottest
    -- path.)
    --   1. senders: each message's contact, found or created;
    --   2. contacts kept current;
    --   3. groups written in;
    --   4. messages, with their conversations and notifications;
    --   5. what only some batches have: media download jobs, group conversations, and changes
    --      to rows stored before them.

    -- 1. Senders. Each message's contact: by WhatsApp id first, else by BSUID, else by a BSUID
    -- it had before (each a probe of a unique index; as scalar subqueries, which no plan can
    -- turn into a scan of the contacts). Looked up once, and once more, for the rows still
    -- without one, after the senders seen for the first time were added. (`contacts` starts
    -- empty: unnest pads it with NULLs.) The lookup says in the same statement whether a sender
    -- is new, and the EXIT is a plain expression: a batch of known senders, the usual one,
    -- starts one executor for its senders, not two.
    FOR pass IN 1..2 LOOP
        SELECT COALESCE(pg_catalog.array_agg(l.c ORDER BY l.ord), '{}'),
               COALESCE(pg_catalog.bool_or(l.c IS NULL AND (l.wa IS NOT NULL OR l.uid IS NOT NULL)), false)
          INTO contacts, unknown
          FROM (SELECT u.ord, u.wa, u.uid,
                       COALESCE(u.c,
                                (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.wa_id = u.wa),
                                (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.user_id = u.uid),
                                (SELECT f.contact_id FROM @extschema@.wa_contact_former_ids f
                                  WHERE f.channel_id = u.ch AND f.user_id = u.uid)) AS c
                  FROM unnest(contacts, channels, froms, from_user_ids) WITH ORDINALITY AS u(c, ch, wa, uid, ord)
                -- (OFFSET 0: each row's contact is looked up once. Flattened into the
                -- aggregate, the lookups ran once for each aggregate that reads c: twice.)
                OFFSET 0) l;
        EXIT WHEN pass = 2 OR NOT unknown;
        -- Senders seen for the first time, in the order they wrote: a later row that shares an
        -- id with an earlier one conflicts (ON CONFLICT DO NOTHING, on either unique key) and
        -- joins that contact, exactly as if the rows had been stored one by one.
        INSERT INTO @extschema@.wa_contacts (channel_id, wa_id, user_id, profile_name, username, last_inbound_at)
        SELECT u.ch, u.wa, u.uid,
               (pg_catalog.array_agg(u.nm ORDER BY u.ord DESC) FILTER (WHERE u.nm IS NOT NULL))[1],
               (pg_catalog.array_agg(u.un ORDER BY u.ord DESC) FILTER (WHERE u.un IS NOT NULL))[1],
               -- A message in a group opens the group's window, not the customer's own.
               pg_catalog.max(@extschema@._wa_window_opened_at(u.ty, u.ts)) FILTER (WHERE u.grp IS NULL)
          FROM unnest(contacts, channels, froms, from_user_ids, names, usernames, types, sent_ats, group_ids)
               WITH ORDINALITY AS u(c, ch, wa, uid, nm, un, ty, ts, grp, ord)
         WHERE u.c IS NULL AND (u.wa IS NOT NULL OR u.uid IS NOT NULL)
         GROUP BY u.ch, u.wa, u.uid
         ORDER BY pg_catalog.min(u.ord)
        ON CONFLICT DO NOTHING;
    END LOOP;

    -- 2. Contacts kept current: the newest profile name and username given, the
    -- 24-hour window, and an id it lacked (unless another contact of the channel holds it:
    -- then the two stay apart rather than every later message failing). A row is only
    -- rewritten when something changed.
    UPDATE @extschema@.wa_contacts k
       SET wa_id = COALESCE(k.wa_id, s.free_wa_id),
           user_id = COALESCE(k.user_id, s.free_user_id),
           profile_name = COALESCE(s.name, k.profile_name),
           username = COALESCE(s.username, k.username),
           last_inbound_at = greatest(k.last_inbound_at, s.seen),
           updated_at = pg_catalog.now()
      FROM (SELECT g.*,
                   CASE WHEN g.wa_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o
                             WHERE o.channel_id = g.channel_id AND o.wa_id = g.wa_id) THEN g.wa_id END AS free_wa_id,
                   CASE WHEN g.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o
                             WHERE o.channel_id = g.channel_id AND o.user_id = g.user_id) THEN g.user_id END AS free_user_id
              FROM (SELECT u.c AS contact_id, pg_catalog.min(u.ch) AS channel_id,
                           (pg_catalog.array_agg(u.wa ORDER BY u.ord DESC) FILTER (WHERE u.wa IS NOT NULL))[1] AS wa_id,
                           (pg_catalog.array_agg(u.uid ORDER BY u.ord DESC) FILTER (WHERE u.uid IS NOT NULL))[1] AS user_id,
                           (pg_catalog.array_agg(u.nm ORDER BY u.ord DESC) FILTER (WHERE u.nm IS NOT NULL))[1] AS name,
                           (pg_catalog.array_agg(u.un ORDER BY u.ord DESC) FILTER (WHERE u.un IS NOT NULL))[1] AS username,
                           pg_catalog.max(@extschema@._wa_window_opened_at(u.ty, u.ts)) FILTER (WHERE u.grp IS NULL) AS seen
                      FROM unnest(contacts, channels, froms, from_user_ids, names, usernames, types, sent_ats, group_ids)
                           WITH ORDINALITY AS u(c, ch, wa, uid, nm, un, ty, ts, grp, ord)
                     WHERE u.c IS NOT NULL
                     GROUP BY u.c) g) s
     WHERE k.id = s.contact_id
       AND ((k.wa_id IS NULL AND s.free_wa_id IS NOT NULL)
         OR (k.user_id IS NULL AND s.free_user_id IS NOT NULL)
         OR k.profile_name IS DISTINCT FROM COALESCE(s.name, k.profile_name)
         OR k.username IS DISTINCT FROM COALESCE(s.username, k.username)
         OR k.last_inbound_at IS DISTINCT FROM greatest(k.last_inbound_at, s.seen));

    -- 3. Groups written in: known from here on (a group created before this extension saw its
    -- webhooks is still one), their writers among the participants, and their 24-hour window
    -- opened. (In group order, so that concurrent writers lock groups in the same order.)
    -- (A plain expression, not a query: a batch without a group starts no executor for it.)
    IF pg_catalog.cardinality(pg_catalog.array_remove(group_ids, NULL)) > 0 THEN
        INSERT INTO @extschema@.wa_groups AS g (channel_id, group_id, participants, last_inbound_at)
        SELECT u.ch, u.grp, COALESCE(pg_catalog.array_agg(DISTINCT u.wa) FILTER (WHERE u.wa IS NOT NULL), '{}'),
               pg_catalog.max(@extschema@._wa_window_opened_at(u.ty, u.ts))
          FROM unnest(channels, group_ids, froms, types, sent_ats) AS u(ch, grp, wa, ty, ts)
         WHERE u.grp IS NOT NULL
         GROUP BY u.ch, u.grp
         ORDER BY u.ch, u.grp
        ON CONFLICT (channel_id, group_id) DO UPDATE
           SET participants = @extschema@._wa_group_participants(g.participants, excluded.participants, '{}'),
               last_inbound_at = greatest(g.last_inbound_at, excluded.last_inbound_at),
               updated_at = pg_catalog.now()
         WHERE NOT (excluded.participants <@ g.participants)
            OR g.last_inbound_at IS DISTINCT FROM greatest(g.last_inbound_at, excluded.last_inbound_at);
    END IF;

    -- 4. Messages: the new ones (ins), with what each brings in the same statement: its
    -- customer's conversation moved forward (conversations) and its wa_message notification
    -- (the SELECT at the end, which also collects what step 5 needs).
    WITH ins AS (
        INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, webhook_event_id, sent_at,
                                         group_id, edited_at, revoked_at,
                                         media_id, media_mime_type, media_sha256, media_filename,
                                         voice, latitude, longitude, location_name, location_address,
                                         reply_to_wamid, forwarded, frequently_forwarded, referral,
                                         reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                         button_payload, order_items, shared_contacts, system_type,
                                         original_wamid, flow_response, flow_token)
        SELECT i.channel_id, i.contact_id, 'inbound', i.wamid, i.type, i.body, 'received', i.payload, i.event_id,
               @extschema@._wa_unix_time(i.ts), i.group_id, later.edited_at, later.revoked_at, d.*, i.flow_response, i.flow_token
          FROM unnest(channels, events, wamids, contacts, types, bodies, sent_ats, payloads, group_ids, flow_responses, flow_tokens)
               WITH ORDINALITY AS i(channel_id, event_id, wamid, contact_id, type, body, ts, payload, group_id, flow_response,
                                    flow_token, ord)
         CROSS JOIN LATERAL @extschema@._wa_message_columns(i.type, i.payload) d
         -- An edit or revoke of this message that arrived before it.
         CROSS JOIN LATERAL (SELECT pg_catalog.max(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'edit') AS edited_at,
                                    pg_catalog.min(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'revoke') AS revoked_at
                               FROM @extschema@.wa_messages e
                              WHERE e.channel_id = i.channel_id AND e.original_wamid = i.wamid) later
         ORDER BY i.ord
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING id, channel_id, contact_id, group_id, type, body, created_at, media_id, system_type, original_wamid
    ), conversations AS (
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, contact_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT n.channel_id, n.contact_id, n.id, n.created_at, 'inbound', n.type, pg_catalog.left(n.body, 200), n.unread
          FROM (SELECT DISTINCT ON (ins.contact_id) ins.*, pg_catalog.count(*) OVER (PARTITION BY ins.contact_id) AS unread
                  FROM ins WHERE ins.contact_id IS NOT NULL AND ins.group_id IS NULL
                 ORDER BY ins.contact_id, ins.id DESC) n
         -- (In contact order, so that concurrent writers lock conversations in the same order.)
         ORDER BY n.contact_id
        ON CONFLICT (channel_id, contact_id) DO UPDATE
           SET unread_count = s.unread_count + excluded.unread_count,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END
    )
    -- (A data-modifying WITH runs to its end whether or not it is read: conversations too.)
    -- (Ids only: LISTEN needs no privilege, so a payload says which row, and the reader reads it
    -- through its own privileges; README, "Notifications".)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
               'id', n.id, 'channel_id', n.channel_id, 'contact_id', n.contact_id)::text)),
           (SELECT pg_catalog.array_agg(ins.id ORDER BY ins.id) FROM ins WHERE ins.media_id IS NOT NULL),
           (SELECT pg_catalog.array_agg(ins.id ORDER BY ins.id) FROM ins WHERE ins.group_id IS NOT NULL),
           (SELECT pg_catalog.array_agg(ins.id ORDER BY ins.id) FROM ins
             WHERE ins.system_type IN ('user_changed_number', 'user_changed_user_id') OR ins.original_wamid IS NOT NULL)
      INTO added, with_media, in_groups, changed
      FROM (SELECT ins.id, ins.channel_id, ins.contact_id FROM ins ORDER BY ins.id) n;

    -- 5. What only some batches have, each a statement of its own, so that a batch without any
    -- starts no executor node for it: an INSERT in the WITH above opens its table and every
    -- index of it at each call, rows or no rows (issue 29: a batch's fixed cost is most of what
    -- a one-message webhook costs). Read back by primary key, in the same transaction.
    -- Media: a download job each, and the delivery worker woken to look for them.
    IF with_media IS NOT NULL THEN
        INSERT INTO @extschema@.wa_media (message_id, channel_id, media_id, mime_type, expected_sha256)
        SELECT m.id, m.channel_id, m.media_id, m.media_mime_type, m.media_sha256
          FROM @extschema@.wa_messages m WHERE m.id = ANY (with_media)
         ORDER BY m.id;
        PERFORM @extschema@._wa_wake_media();
    END IF;
    -- Groups written in: their conversations moved forward.
    IF in_groups IS NOT NULL THEN
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, group_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT n.channel_id, n.group_id, n.id, n.created_at, 'inbound', n.type, pg_catalog.left(n.body, 200), n.unread
          FROM (SELECT DISTINCT ON (m.channel_id, m.group_id) m.id, m.channel_id, m.group_id, m.created_at, m.type, m.body,
                       pg_catalog.count(*) OVER (PARTITION BY m.channel_id, m.group_id) AS unread
                  FROM @extschema@.wa_messages m WHERE m.id = ANY (in_groups)
                 ORDER BY m.channel_id, m.group_id, m.id DESC) n
         ORDER BY n.channel_id, n.group_id
        ON CONFLICT (channel_id, group_id) WHERE group_id IS NOT NULL DO UPDATE
           SET unread_count = s.unread_count + excluded.unread_count,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END;
    END IF;

    IF changed IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_message_changes(changed);
    END IF;
    RETURN added;
END
$$;

-- What new messages change in rows stored before them: a system notice that the customer's
-- number or BSUID changed moves their contact to it; an edit or revoke marks the original
-- (if it arrived already; otherwise the original is marked when it comes).
CREATE FUNCTION _wa_apply_message_changes(message_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT x.* FROM @extschema@.wa_messages x WHERE x.id = ANY (message_ids) ORDER BY x.id LOOP
        IF m.type = 'system' AND m.contact_id IS NOT NULL THEN
            PERFORM @extschema@._wa_apply_identity_change(m.contact_id, m.payload -> 'system');
        ELSIF m.type = 'revoke' THEN
            UPDATE @extschema@.wa_messages o SET revoked_at = COALESCE(m.sent_at, m.created_at), updated_at = pg_catalog.now()
             WHERE o.channel_id = m.channel_id AND o.wamid = m.original_wamid AND o.revoked_at IS NULL;
        ELSIF m.type = 'edit' THEN
            -- (The latest edit, whichever order edits arrive in.)
            UPDATE @extschema@.wa_messages o SET edited_at = greatest(o.edited_at, COALESCE(m.sent_at, m.created_at)), updated_at = pg_catalog.now()
             WHERE o.channel_id = m.channel_id AND o.wamid = m.original_wamid;
        END IF;
    END LOOP;
END
$$;

-- A contact's BSUID `replaced_id` gave way to `current_id`: the old one is kept in
-- wa_contact_former_ids (so a message still sent under it reaches the same contact) and the new
-- one is no longer a former id of anyone. For user_id_update and user_changed_user_id alike.
CREATE FUNCTION _wa_keep_former_user_id(channel bigint, contact bigint, replaced_id text, current_id text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF replaced_id IS NOT NULL AND replaced_id IS DISTINCT FROM current_id THEN
        INSERT INTO @extschema@.wa_contact_former_ids AS f (channel_id, user_id, contact_id)
        VALUES (channel, replaced_id, contact)
        ON CONFLICT (channel_id, user_id) DO UPDATE SET contact_id = excluded.contact_id, replaced_at = pg_catalog.now();
    END IF;
    DELETE FROM @extschema@.wa_contact_former_ids f WHERE f.channel_id = channel AND f.user_id = current_id;
END
$$;

-- A customer's BSUID changed (user_id_update): their contact (found by WhatsApp id, else by
-- the previous BSUID, current or former) takes the new one and its parent, and keeps the one it
-- had in wa_contact_former_ids, so messages under either reach it. If the new BSUID already
-- belongs to another contact, both stay as they are (as for user_changed_user_id). In order,
-- one by one: these are rare. Returns how many contacts moved.
CREATE FUNCTION _wa_apply_user_id_updates(channels bigint[], wa_ids text[], previous text[], currents text[],
                                          parents text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    k @extschema@.wa_contacts;
    moved integer := 0;
BEGIN
    FOR r IN SELECT * FROM unnest(channels, wa_ids, previous, currents, parents) WITH ORDINALITY
                           AS u(ch, wa, prev, cur, par, ord) ORDER BY u.ord LOOP
        k := NULL;
        SELECT * INTO k FROM @extschema@.wa_contacts x WHERE x.channel_id = r.ch AND x.wa_id = r.wa;
        IF k.id IS NULL THEN
            SELECT * INTO k FROM @extschema@.wa_contacts x WHERE x.channel_id = r.ch AND x.user_id = r.prev;
        END IF;
        IF k.id IS NULL THEN
            SELECT x.* INTO k FROM @extschema@.wa_contacts x
              JOIN @extschema@.wa_contact_former_ids f ON f.contact_id = x.id
             WHERE f.channel_id = r.ch AND f.user_id = r.prev;
        END IF;
        CONTINUE WHEN k.id IS NULL  -- not a customer of this channel yet: their next message creates them
                   OR k.user_id IS NOT DISTINCT FROM r.cur
                   OR EXISTS (SELECT 1 FROM @extschema@.wa_contacts o WHERE o.channel_id = r.ch AND o.user_id = r.cur);
        PERFORM @extschema@._wa_keep_former_user_id(r.ch, k.id, k.user_id, r.cur);
        IF r.prev IS DISTINCT FROM k.user_id THEN
            PERFORM @extschema@._wa_keep_former_user_id(r.ch, k.id, r.prev, r.cur);
        END IF;
        UPDATE @extschema@.wa_contacts x
           SET user_id = r.cur, parent_user_id = COALESCE(r.par, x.parent_user_id), updated_at = pg_catalog.now()
         WHERE x.id = k.id;
        moved := moved + 1;
    END LOOP;
    RETURN moved;
END
$$;

-- A customer changed their number (user_changed_number: system.wa_id is the new one) or their
-- business-scoped id (user_changed_user_id: system.user_id). The contact keeps its history; if
-- the new id already belongs to another contact of the channel, both stay as they are. A
-- replaced BSUID is kept in wa_contact_former_ids, so a message still sent under it (a
-- redelivery, an older client) reaches the same contact, as after a user_id_update.
CREATE FUNCTION _wa_apply_identity_change(contact bigint, sys jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k @extschema@.wa_contacts;
BEGIN
    SELECT * INTO k FROM @extschema@.wa_contacts x WHERE x.id = contact;
    IF sys ->> 'type' = 'user_changed_number' AND sys ->> 'wa_id' IS NOT NULL THEN
        UPDATE @extschema@.wa_contacts x SET wa_id = sys ->> 'wa_id', updated_at = pg_catalog.now()
         WHERE x.id = contact
           AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o WHERE o.channel_id = k.channel_id AND o.wa_id = sys ->> 'wa_id');
    ELSIF sys ->> 'type' = 'user_changed_user_id' AND sys ->> 'user_id' IS NOT NULL
          AND k.user_id IS DISTINCT FROM sys ->> 'user_id' THEN
        UPDATE @extschema@.wa_contacts x SET user_id = sys ->> 'user_id', updated_at = pg_catalog.now()
         WHERE x.id = contact
           AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_contacts o WHERE o.channel_id = k.channel_id AND o.user_id = sys ->> 'user_id');
        IF FOUND THEN
            PERFORM @extschema@._wa_keep_former_user_id(k.channel_id, contact, k.user_id, sys ->> 'user_id');
        END IF;
    END IF;
END
$$;

-- Counts what the listener saw for a channel (see wa_channel_counters).
CREATE FUNCTION _wa_count(channel bigint, p_kind text, p_detail text, n bigint DEFAULT 1) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @extschema@.wa_channel_counters AS k (channel_id, kind, count, last_at, last_detail)
    VALUES (channel, p_kind, n, pg_catalog.now(), p_detail)
    ON CONFLICT (channel_id, kind) DO UPDATE
       SET count = k.count + n, last_at = pg_catalog.now(), last_detail = COALESCE(p_detail, k.last_detail);
END
$$;

-- What ON DELETE CASCADE would do for wa_conversation_state (see sql/schema.sql), once per
-- statement: a deleted contact (or a channel, whose contacts cascade) takes its conversation.
CREATE FUNCTION _wa_contacts_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.wa_conversation_state s USING gone WHERE s.channel_id = gone.channel_id AND s.contact_id = gone.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER wa_contacts_deleted AFTER DELETE ON wa_contacts
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION _wa_contacts_deleted();
