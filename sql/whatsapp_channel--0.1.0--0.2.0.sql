-- whatsapp_channel 0.1.0 -> 0.2.0, applied by ALTER EXTENSION whatsapp_channel UPDATE.
-- Every schema change after 0.1.0 goes here (tests/e2e/tests/upgrade.rs checks that the result
-- equals a fresh CREATE EXTENSION of 0.2.0).
\echo Use "ALTER EXTENSION whatsapp_channel UPDATE" to load this file. \quit

-- Metrics (src/metrics/sql.rs, sql/metrics.sql): the samples GET /metrics serves, as rows.
CREATE FUNCTION "_wa_metrics"() RETURNS TABLE (
	"metric" TEXT,
	"labels" jsonb,
	"value" double precision
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', '_wa_metrics_wrapper';

CREATE VIEW wa_metrics AS
SELECT metric, labels, value FROM _wa_metrics();

COMMENT ON VIEW wa_metrics IS 'The samples GET /metrics serves (Prometheus names), one row each; counters count since the server started.';

-- user_changed_user_id keeps the replaced BSUID in wa_contact_former_ids, as user_id_update does,
-- through one helper (sql/inbound.sql).
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

CREATE OR REPLACE FUNCTION _wa_apply_identity_change(contact bigint, sys jsonb) RETURNS void
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

CREATE OR REPLACE FUNCTION _wa_apply_user_id_updates(channels bigint[], wa_ids text[], previous text[], currents text[],
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

-- Templates: a send must give a media header, a header placeholder, a URL button's suffix and a
-- COPY_CODE button's code (src/api/templates.rs, sql/outbound.sql).
CREATE FUNCTION "_wa_template_header_button_problem"(
	"template_components" jsonb,
	"components" jsonb
) RETURNS TEXT
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_wa_template_header_button_problem_wrapper';

CREATE OR REPLACE FUNCTION _wa_check_template(channel text, p_name text, p_language text, components jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch_id    bigint;
    t        @extschema@.wa_templates;
    expected integer;
    given    integer;
    problem  text;
BEGIN
    SELECT c.id INTO ch_id FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF ch_id IS NULL OR NOT EXISTS (SELECT 1 FROM @extschema@.wa_templates x WHERE x.channel_id = ch_id) THEN
        RETURN; -- unknown channels are refused by _wa_enqueue; unsynced ones are not checked
    END IF;
    SELECT * INTO t FROM @extschema@.wa_templates x WHERE x.channel_id = ch_id AND x.name = p_name AND x.language = p_language;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'template % (%) is not a template of channel %', pg_catalog.quote_literal(p_name), p_language, pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object',
                  HINT = 'Its templates: ' || (SELECT pg_catalog.string_agg(x.name || ' (' || x.language || ', ' || x.status || ')', ', ' ORDER BY x.name, x.language)
                                                 FROM @extschema@.wa_templates x WHERE x.channel_id = ch_id)
                      || '. Run wa_sync_templates(' || pg_catalog.quote_literal(channel) || ') if it was created since.';
    END IF;
    IF t.status <> 'APPROVED' THEN
        RAISE EXCEPTION 'template % (%) is %, not APPROVED', pg_catalog.quote_literal(p_name), p_language, t.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = COALESCE('Meta''s reason: ' || t.reason || '. ', '') || 'Only approved templates can be sent; see WhatsApp Manager -> Message templates.';
    END IF;
    problem := @extschema@._wa_named_body_parameter_problem(t.components, components);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'template % (%) %', pg_catalog.quote_literal(p_name), p_language, problem
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Its body is "' || COALESCE((SELECT c ->> 'text' FROM pg_catalog.jsonb_array_elements(t.components) c
                                                    WHERE pg_catalog.upper(c ->> 'type') = 'BODY' LIMIT 1), '(none)')
                      || '"; give each name once: components => ''[{"type":"body","parameters":[{"type":"text","parameter_name":"<name>","text":"..."}, ...]}]''.';
    END IF;
    problem := @extschema@._wa_template_header_button_problem(t.components, components);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'template % (%) %', pg_catalog.quote_literal(p_name), p_language, problem
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Its header and buttons: ' || COALESCE((SELECT pg_catalog.string_agg(c::text, ' ') FROM pg_catalog.jsonb_array_elements(t.components) c
                                                                  WHERE pg_catalog.upper(c ->> 'type') IN ('HEADER', 'BUTTONS')), '(none)')
                      || '. Meta refuses a send without them (error 132000).';
    END IF;
    expected := @extschema@._wa_template_body_parameters(t.components);
    given := @extschema@._wa_given_body_parameters(components);
    IF expected <> given THEN
        RAISE EXCEPTION 'template % (%) expects % body parameter(s), got %', pg_catalog.quote_literal(p_name), p_language, expected, given
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Its body is "' || COALESCE((SELECT c ->> 'text' FROM pg_catalog.jsonb_array_elements(t.components) c
                                                    WHERE pg_catalog.upper(c ->> 'type') = 'BODY' LIMIT 1), '(none)')
                      || '"; pass components => ''[{"type":"body","parameters":[{"type":"text","text":"..."}, ...]}]''.';
    END IF;
END
$$;

-- Groups (the Groups API), history and contacts sync of coexistence numbers, and the Marketing
-- Messages API (sql/schema.sql, sql/inbound.sql, sql/outbound.sql, sql/views.sql).
ALTER TABLE wa_channels ADD COLUMN marketing_messages boolean NOT NULL DEFAULT false;
ALTER TABLE wa_contacts ADD COLUMN saved_name text;
CREATE TABLE wa_groups (
    channel_id         bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    -- Meta's opaque id (the `to` of a group send).
    group_id           text NOT NULL,
    subject            text,
    description        text,
    invite_link        text,
    -- auto_approve, or approval_required (join requests).
    join_approval_mode text,
    -- active; suspended (by Meta, until group_suspend_cleared); deleted; create_failed (Meta
    -- could not create it: see last_event). Only active groups can be sent to.
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted', 'create_failed')),
    -- Meta's time of the lifecycle or status event that set `status`: an older event that
    -- arrives later (webhooks are not ordered) does not undo it.
    status_at          timestamptz,
    -- WhatsApp ids of the participants (at most 8): who joined and has not left, and who wrote.
    participants       text[] NOT NULL DEFAULT '{}',
    -- A message from any participant opens the 24-hour window for the whole group.
    last_inbound_at    timestamptz,
    -- The latest group webhook about it, as Meta sent it (its errors, if a request failed).
    last_event         jsonb,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (channel_id, group_id)
);
ALTER TABLE wa_messages ADD COLUMN group_id text,
                        ADD COLUMN from_history boolean NOT NULL DEFAULT false,
                        ADD COLUMN graph_endpoint text CHECK (graph_endpoint IN ('marketing_messages'));
CREATE INDEX wa_messages_group ON wa_messages (channel_id, group_id, id) WHERE group_id IS NOT NULL;
ALTER TABLE wa_conversation_state ALTER COLUMN contact_id DROP NOT NULL,
                                  ADD COLUMN group_id text,
                                  ADD CONSTRAINT wa_conversation_state_one_party CHECK ((contact_id IS NULL) <> (group_id IS NULL));
CREATE UNIQUE INDEX wa_conversation_state_group ON wa_conversation_state (channel_id, group_id) WHERE group_id IS NOT NULL;
ALTER TABLE wa_message_statuses ADD COLUMN participant_id text,
                                DROP CONSTRAINT wa_message_statuses_channel_id_wamid_status_key,
                                ADD CONSTRAINT wa_message_statuses_key UNIQUE NULLS NOT DISTINCT (channel_id, wamid, status, participant_id);

CREATE FUNCTION _wa_group_participants(had text[], joined text[], gone text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(SELECT DISTINCT p FROM unnest(had || joined) AS p WHERE p <> ALL (gone) ORDER BY p);

DROP FUNCTION _wa_receive_messages(bigint[], bigint[], text[], text[], text[], text[], text[], text[], text[], double precision[], jsonb[]);
CREATE FUNCTION _wa_receive_messages(
    channels bigint[], events bigint[], wamids text[], froms text[], from_user_ids text[], names text[], usernames text[],
    types text[], bodies text[], sent_ats double precision[], payloads jsonb[], group_ids text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Each statement below joins a batch (tens to thousands of rows) to tables of millions: only
-- nested loops over their unique indexes keep its cost independent of the tables' size, for a
-- batch of any size. (No JIT: nothing here runs long.)
-- Generic plans: those nested loops suit every batch size, and a custom plan per call (which
-- PL/pgSQL keeps choosing when a batch's size makes the generic estimate look worse) was a
-- third of the delivery worker's time in _wa_apply_statuses, measured with perf.
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- Each message's contact, in the order of the arrays (NULL: none yet, or no sender id).
    -- Arrays rather than a staging table: a temporary table is truncated at every commit,
    -- a tenth of the listener's time (perf).
    contacts   bigint[] := '{}';
    added      integer;
    media_jobs integer;
    changed    bigint[];
BEGIN
    -- Each message's contact: by WhatsApp id first, else by BSUID, else by a BSUID it had
    -- before (each a probe of a unique index; as scalar subqueries, which no plan can turn into
    -- a scan of the contacts). Looked
    -- up once, and once more, for the rows still without one, after the senders seen for the
    -- first time were added. (`contacts` starts empty: unnest pads it with NULLs.)
    FOR pass IN 1..2 LOOP
        contacts := ARRAY(
            SELECT COALESCE(u.c,
                            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.wa_id = u.wa),
                            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.user_id = u.uid),
                            (SELECT f.contact_id FROM @extschema@.wa_contact_former_ids f
                              WHERE f.channel_id = u.ch AND f.user_id = u.uid))
              FROM unnest(contacts, channels, froms, from_user_ids) WITH ORDINALITY AS u(c, ch, wa, uid, ord)
             ORDER BY u.ord);
        EXIT WHEN pass = 2 OR NOT EXISTS (SELECT 1 FROM unnest(contacts, froms, from_user_ids) AS u(c, wa, uid)
                                           WHERE u.c IS NULL AND (u.wa IS NOT NULL OR u.uid IS NOT NULL));
        -- Senders seen for the first time, in the order they wrote: a later row that shares an
        -- id with an earlier one conflicts (ON CONFLICT DO NOTHING, on either unique key) and
        -- joins that contact, exactly as if the rows had been stored one by one.
        INSERT INTO @extschema@.wa_contacts (channel_id, wa_id, user_id, profile_name, username, last_inbound_at)
        SELECT u.ch, u.wa, u.uid,
               (pg_catalog.array_agg(u.nm ORDER BY u.ord DESC) FILTER (WHERE u.nm IS NOT NULL))[1],
               (pg_catalog.array_agg(u.un ORDER BY u.ord DESC) FILTER (WHERE u.un IS NOT NULL))[1],
               -- A system notice is not the customer writing, and a message in a group opens the
               -- group's window: neither opens the customer's own 24-hour window.
               pg_catalog.max(COALESCE(@extschema@._wa_unix_time(u.ts), pg_catalog.now())) FILTER (WHERE u.ty <> 'system' AND u.grp IS NULL)
          FROM unnest(contacts, channels, froms, from_user_ids, names, usernames, types, sent_ats, group_ids)
               WITH ORDINALITY AS u(c, ch, wa, uid, nm, un, ty, ts, grp, ord)
         WHERE u.c IS NULL AND (u.wa IS NOT NULL OR u.uid IS NOT NULL)
         GROUP BY u.ch, u.wa, u.uid
         ORDER BY pg_catalog.min(u.ord)
        ON CONFLICT DO NOTHING;
    END LOOP;

    -- Keep every sender's contact current: the newest profile name and username given, the
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
                           pg_catalog.max(COALESCE(@extschema@._wa_unix_time(u.ts), pg_catalog.now())) FILTER (WHERE u.ty <> 'system' AND u.grp IS NULL) AS seen
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

    -- The groups written in: known from here on (a group created before this extension saw its
    -- webhooks is still one), their writers among the participants, and their 24-hour window
    -- opened. (In group order, so that concurrent writers lock groups in the same order.)
    IF EXISTS (SELECT 1 FROM unnest(group_ids) AS g(id) WHERE g.id IS NOT NULL) THEN
        INSERT INTO @extschema@.wa_groups AS g (channel_id, group_id, participants, last_inbound_at)
        SELECT u.ch, u.grp, COALESCE(pg_catalog.array_agg(DISTINCT u.wa) FILTER (WHERE u.wa IS NOT NULL), '{}'),
               pg_catalog.max(COALESCE(@extschema@._wa_unix_time(u.ts), pg_catalog.now())) FILTER (WHERE u.ty <> 'system')
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

    WITH ins AS (
        INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, webhook_event_id, sent_at,
                                         group_id, edited_at, revoked_at,
                                         media_id, media_mime_type, media_sha256, media_filename,
                                         voice, latitude, longitude, location_name, location_address,
                                         reply_to_wamid, forwarded, frequently_forwarded, referral,
                                         reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                         button_payload, order_items, shared_contacts, system_type,
                                         original_wamid)
        SELECT i.channel_id, i.contact_id, 'inbound', i.wamid, i.type, i.body, 'received', i.payload, i.event_id,
               @extschema@._wa_unix_time(i.ts), i.group_id, later.edited_at, later.revoked_at, d.*
          FROM unnest(channels, events, wamids, contacts, types, bodies, sent_ats, payloads, group_ids)
               WITH ORDINALITY AS i(channel_id, event_id, wamid, contact_id, type, body, ts, payload, group_id, ord)
         CROSS JOIN LATERAL @extschema@._wa_message_columns(i.type, i.payload) d
         -- An edit or revoke of this message that arrived before it.
         CROSS JOIN LATERAL (SELECT pg_catalog.max(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'edit') AS edited_at,
                                    pg_catalog.min(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'revoke') AS revoked_at
                               FROM @extschema@.wa_messages e
                              WHERE e.channel_id = i.channel_id AND e.original_wamid = i.wamid) later
         ORDER BY i.ord
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING id, channel_id, contact_id, group_id, type, body, created_at, media_id, media_mime_type, media_sha256, system_type, original_wamid
    ), media AS (
        INSERT INTO @extschema@.wa_media (message_id, channel_id, media_id, mime_type, expected_sha256)
        SELECT ins.id, ins.channel_id, ins.media_id, ins.media_mime_type, ins.media_sha256 FROM ins WHERE ins.media_id IS NOT NULL
        RETURNING 1
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
    ), group_conversations AS (
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, group_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT n.channel_id, n.group_id, n.id, n.created_at, 'inbound', n.type, pg_catalog.left(n.body, 200), n.unread
          FROM (SELECT DISTINCT ON (ins.channel_id, ins.group_id) ins.*,
                       pg_catalog.count(*) OVER (PARTITION BY ins.channel_id, ins.group_id) AS unread
                  FROM ins WHERE ins.group_id IS NOT NULL
                 ORDER BY ins.channel_id, ins.group_id, ins.id DESC) n
         ORDER BY n.channel_id, n.group_id
        ON CONFLICT (channel_id, group_id) WHERE group_id IS NOT NULL DO UPDATE
           SET unread_count = s.unread_count + excluded.unread_count,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END
    )
    -- (A data-modifying WITH runs to its end whether or not it is read: conversations too.)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
               'id', n.id, 'channel', n.name, 'type', n.type, 'contact_id', n.contact_id, 'group_id', n.group_id)::text)),
           (SELECT pg_catalog.count(*) FROM media),
           (SELECT pg_catalog.array_agg(ins.id ORDER BY ins.id) FROM ins
             WHERE ins.system_type IN ('user_changed_number', 'user_changed_user_id') OR ins.original_wamid IS NOT NULL)
      INTO added, media_jobs, changed
      FROM (SELECT ins.id, c.name, ins.type, ins.contact_id, ins.group_id FROM ins JOIN @extschema@.wa_channels c ON c.id = ins.channel_id
             ORDER BY ins.id) n;
    IF media_jobs > 0 THEN
        PERFORM @extschema@._wa_wake_delivery(); -- the delivery worker downloads media too
    END IF;
    IF changed IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_message_changes(changed);
    END IF;
    RETURN added;
END
$$;

DROP FUNCTION _wa_receive_statuses(bigint[], text[], text[], double precision[], text[], integer[], text[], text[], jsonb[], text[], text[], text[], boolean[]);
CREATE FUNCTION _wa_receive_statuses(channels bigint[], wamids text[], statuses text[], status_ats double precision[],
                                     recipients text[], codes integer[], titles text[], details text[], payloads jsonb[],
                                     pricing_models text[], pricing_types text[], pricing_categories text[],
                                     billables boolean[], participants text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    new_channels bigint[];
    new_wamids   text[];
BEGIN
    -- Serialises with _wa_mark_sent for the same wamid: otherwise a status arriving while the
    -- send is being recorded would be seen by neither transaction and never applied. In wamid
    -- order (bytewise, as the delivery worker records sends), so the two cannot deadlock.
    PERFORM pg_catalog.count(pg_catalog.pg_advisory_xact_lock(k.lock))
       FROM (SELECT @extschema@._wa_wamid_lock(u.ch, u.w) AS lock
               FROM (SELECT DISTINCT u.ch, u.w FROM unnest(channels, wamids) AS u(ch, w)) u
              ORDER BY u.w COLLATE "C", u.ch OFFSET 0) k;
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
        n.invite_link := COALESCE(r.link, g.invite_link);
        n.join_approval_mode := COALESCE(r.mode, g.join_approval_mode);
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
                  AND (n.subject, n.description, n.invite_link, n.join_approval_mode, n.status, n.status_at, n.participants)
                      IS NOT DISTINCT FROM
                      (g.subject, g.description, g.invite_link, g.join_approval_mode, g.status, g.status_at, g.participants);
        UPDATE @extschema@.wa_groups x
           SET subject = n.subject, description = n.description, invite_link = n.invite_link,
               join_approval_mode = n.join_approval_mode, status = n.status, status_at = n.status_at,
               participants = n.participants, last_event = r.pl, updated_at = pg_catalog.now()
         WHERE x.channel_id = r.ch AND x.group_id = r.gid;
        PERFORM pg_catalog.pg_notify('wa_group', pg_catalog.json_build_object(
            'channel', (SELECT c.name FROM @extschema@.wa_channels c WHERE c.id = r.ch),
            'group_id', r.gid, 'type', r.kind, 'status', n.status)::text);
        changed := changed + 1;
    END LOOP;
    RETURN changed;
END
$$;

CREATE FUNCTION _wa_receive_history(channels bigint[], wamids text[], customers text[], from_business boolean[],
                                    types text[], bodies text[], sent_ats double precision[], statuses text[],
                                    payloads jsonb[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
SET plan_cache_mode = force_generic_plan
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
               'id', n.id, 'channel', n.name, 'type', n.type, 'contact_id', n.contact_id, 'group_id', NULL,
               'direction', n.direction, 'from_history', true)::text)) FILTER (WHERE NOT n.inserted)
      INTO added, media_jobs, filled_in
      FROM (SELECT ins.*, c.name FROM ins JOIN @extschema@.wa_channels c ON c.id = ins.channel_id ORDER BY ins.id) n;
    IF media_jobs > 0 THEN
        PERFORM @extschema@._wa_wake_delivery(); -- the delivery worker downloads media too
    END IF;
    RETURN added;
END
$$;

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
    PERFORM pg_catalog.pg_notify('wa_history', pg_catalog.json_build_object(
        'channel', (SELECT c.name FROM @extschema@.wa_channels c WHERE c.id = channel),
        'phase', phase, 'chunk_order', chunk_order, 'progress', progress, 'messages', messages,
        'error_code', error_code, 'error', error)::text);
END
$$;

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

DROP FUNCTION _wa_enqueue_target(text, text, text);
CREATE FUNCTION _wa_enqueue_target(channel text, recipient text, p_type text, to_group boolean)
RETURNS TABLE (channel_id bigint, contact_id bigint, group_id text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.id, k.id, g.group_id
      FROM @extschema@.wa_channels c
      LEFT JOIN LATERAL (SELECT k.id, k.last_inbound_at FROM @extschema@.wa_contacts k
                          WHERE NOT _wa_enqueue_target.to_group
                            AND k.channel_id = c.id
                            AND (k.wa_id = pg_catalog.ltrim(_wa_enqueue_target.recipient, '+')
                                 OR k.user_id = _wa_enqueue_target.recipient)
                          -- (two contacts match when a customer's phone and BSUID were seen apart)
                          ORDER BY k.last_inbound_at DESC NULLS LAST
                          LIMIT 1) k ON true
      LEFT JOIN LATERAL (SELECT g.group_id, g.last_inbound_at FROM @extschema@.wa_groups g
                          WHERE _wa_enqueue_target.to_group
                            AND g.channel_id = c.id AND g.group_id = _wa_enqueue_target.recipient
                            AND g.status = 'active') g ON true
     WHERE c.name = _wa_enqueue_target.channel AND c.enabled
       AND (NOT _wa_enqueue_target.to_group OR g.group_id IS NOT NULL)
       AND (_wa_enqueue_target.p_type IN ('template', 'mark_read') OR c.allow_outside_window
            OR k.last_inbound_at >= pg_catalog.now() - interval '24 hours'
            OR g.last_inbound_at >= pg_catalog.now() - interval '24 hours');
END;

CREATE OR REPLACE FUNCTION _wa_enqueue(channel text, recipient text, p_type text, p_body text, request jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    msg_id   bigint;
    sends    boolean;
    to_group boolean := COALESCE(request ->> 'recipient_type' = 'group', false);
    ch       @extschema@.wa_channels;
    contact  @extschema@.wa_contacts;
    grp      @extschema@.wa_groups;
    last_in  timestamptz;
BEGIN
    -- One statement on the way in (the channel, the customer's 24-hour window and the row);
    -- only when it inserts nothing are the rules checked one by one, to say which one refused.
    IF p_type = 'text' THEN
        -- Text, most of what an inbox sends, has one derived column (the message it replies
        -- to): the other twenty of _wa_message_columns() are NULL for it, and computing them
        -- cost a tenth of an enqueue (measured).
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload,
                                              next_attempt_at, reply_to_wamid, voice, forwarded, frequently_forwarded)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body, 'queued', recipient, request, pg_catalog.now(),
               request -> 'context' ->> 'message_id', false, false, false
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group) t
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    ELSE
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload, next_attempt_at,
                                              media_id, media_mime_type, media_sha256, media_filename,
                                              voice, latitude, longitude, location_name, location_address,
                                              reply_to_wamid, forwarded, frequently_forwarded, referral,
                                              reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                              button_payload, order_items, shared_contacts, system_type,
                                              original_wamid)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body, 'queued', recipient, request, pg_catalog.now(), d.*
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group) t
         CROSS JOIN LATERAL @extschema@._wa_message_columns(p_type, request) d
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    END IF;
    IF msg_id IS NOT NULL THEN
        -- A paused channel's queue waits for wa_set_access_token() (or any change to the
        -- channel, see wa_channels_wake): no need to wake the worker for it.
        IF sends THEN
            PERFORM @extschema@._wa_wake_delivery();
        END IF;
        RETURN msg_id;
    END IF;

    SELECT * INTO ch FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF NOT ch.enabled THEN
        RAISE EXCEPTION 'channel % is disabled', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Enable it with UPDATE wa_channels SET enabled = true WHERE name = %L.', channel);
    END IF;
    IF to_group THEN
        SELECT * INTO grp FROM @extschema@.wa_groups g WHERE g.channel_id = ch.id AND g.group_id = recipient;
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a group of channel %', recipient, pg_catalog.quote_literal(channel)
                USING ERRCODE = 'undefined_object',
                      HINT = 'A group is known from its webhooks (subscribe the app to group_lifecycle_update) or its first message; see SELECT group_id, subject FROM wa_groups. A phone number needs its country code.';
        END IF;
        IF grp.status <> 'active' THEN
            RAISE EXCEPTION 'group % of channel % is %', recipient, pg_catalog.quote_literal(channel), pg_catalog.replace(grp.status, '_', ' ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = CASE grp.status WHEN 'suspended' THEN 'Meta suspended it; messages can be sent again once it clears the suspension (group_suspend_cleared).'
                                             ELSE 'Only an active group can be sent to; see wa_groups.last_event for what Meta said.' END;
        END IF;
        last_in := grp.last_inbound_at;
    ELSE
        SELECT * INTO contact FROM @extschema@.wa_contacts k
         WHERE k.channel_id = ch.id AND (k.wa_id = pg_catalog.ltrim(recipient, '+') OR k.user_id = recipient)
         ORDER BY k.last_inbound_at DESC NULLS LAST
         LIMIT 1;
        last_in := contact.last_inbound_at;
    END IF;
    IF p_type IN ('template', 'mark_read') OR ch.allow_outside_window
       OR last_in >= pg_catalog.now() - interval '24 hours' THEN
        -- The channel was enabled, the switch turned on or the customer wrote since the INSERT
        -- looked (a concurrent transaction): nothing refuses the message now, so the caller
        -- only needs to try again.
        RAISE EXCEPTION 'channel % changed while the message was being queued', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'serialization_failure', HINT = 'Try again.';
    END IF;
    RAISE EXCEPTION 'the 24-hour customer-service window with % is closed: %', CASE WHEN to_group THEN 'group ' ELSE '' END || recipient,
        CASE WHEN last_in IS NULL THEN CASE WHEN to_group THEN 'nobody has written in it' ELSE 'they have not written to channel ' || pg_catalog.quote_literal(channel) END
             ELSE 'the last message from ' || CASE WHEN to_group THEN 'a participant' ELSE 'them' END || ' was at ' || last_in::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Only an approved template can (re)open the conversation: use wa_send_template(). '
                  || 'To send anyway, UPDATE wa_channels SET allow_outside_window = true.';
END
$$;

CREATE OR REPLACE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_       text := @extschema@.wa_normalize_recipient(recipient);
    request   jsonb;
    category  text;
    marketing boolean;
    msg_id    bigint;
BEGIN
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    request := @extschema@._wa_template_request(to_, name, language, components);
    -- The template's category, as wa_sync_templates() and template webhooks left it (NULL when
    -- the channel's templates were never synced).
    SELECT pg_catalog.upper(t.category), c.marketing_messages INTO category, marketing
      FROM @extschema@.wa_channels c
      LEFT JOIN @extschema@.wa_templates t ON t.channel_id = c.id AND t.name = wa_send_template.name AND t.language = wa_send_template.language
     WHERE c.name = channel;
    IF request ->> 'recipient_type' = 'group' AND category = 'AUTHENTICATION' THEN
        RAISE EXCEPTION 'template % (%) is an authentication template: Meta''s Groups API does not send those to groups', pg_catalog.quote_literal(name), language
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Send one-time codes to each person with wa_send_template(channel, ''<their number>'', ...).';
    END IF;
    msg_id := @extschema@._wa_enqueue(channel, to_, 'template', name, request);
    -- A marketing template of a channel onboarded to the Marketing Messages API goes through it.
    IF marketing AND category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        UPDATE @extschema@.wa_messages m SET graph_endpoint = 'marketing_messages' WHERE m.id = msg_id;
    END IF;
    RETURN msg_id;
END
$$;

CREATE OR REPLACE FUNCTION _wa_counterpart(channel text, message_wamid text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who text;
    grp text;
BEGIN
    SELECT CASE WHEN m.direction = 'outbound' THEN m.recipient
                ELSE COALESCE('+' || k.wa_id, k.user_id) END,
           m.group_id
      INTO who, grp
      FROM @extschema@.wa_messages m
      JOIN @extschema@.wa_channels c ON c.id = m.channel_id
      LEFT JOIN @extschema@.wa_contacts k ON k.id = m.contact_id
     WHERE c.name = channel AND m.wamid = message_wamid;
    IF grp IS NOT NULL THEN
        RAISE EXCEPTION 'message % is in group %: Meta''s Groups API does not support reactions or read receipts in groups', message_wamid, grp
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'A group takes text, media and templates only; its unread count clears when you write to it.';
    END IF;
    IF who IS NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.wa_channels c WHERE c.name = channel) THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF who IS NULL THEN
        RAISE EXCEPTION 'no message % in channel %', message_wamid, pg_catalog.quote_literal(channel)
            USING ERRCODE = 'no_data_found', HINT = 'Pass the wamid of a message of this channel (wa_messages.wamid).';
    END IF;
    RETURN who;
END
$$;

CREATE OR REPLACE FUNCTION _wa_outbound_conversation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.type = 'mark_read' THEN
        UPDATE @extschema@.wa_conversation_state s SET unread_count = 0
         WHERE s.channel_id = NEW.channel_id AND s.contact_id = NEW.contact_id AND s.unread_count <> 0;
    ELSIF NEW.group_id IS NOT NULL THEN
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, group_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        VALUES (NEW.channel_id, NEW.group_id, NEW.id, NEW.created_at, 'outbound', NEW.type, pg_catalog.left(NEW.body, 200), 0)
        ON CONFLICT (channel_id, group_id) WHERE group_id IS NOT NULL DO UPDATE
           SET unread_count = 0,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END;
    ELSE
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, contact_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        VALUES (NEW.channel_id, NEW.contact_id, NEW.id, NEW.created_at, 'outbound', NEW.type, pg_catalog.left(NEW.body, 200), 0)
        ON CONFLICT (channel_id, contact_id) DO UPDATE
           SET unread_count = 0,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER wa_messages_outbound_conversation ON wa_messages;
CREATE CONSTRAINT TRIGGER wa_messages_outbound_conversation AFTER INSERT ON wa_messages
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.direction = 'outbound' AND (NEW.contact_id IS NOT NULL OR NEW.group_id IS NOT NULL) AND NOT NEW.from_history)
    EXECUTE FUNCTION _wa_outbound_conversation();

DROP FUNCTION _wa_claim_due(integer, text, jsonb);
CREATE FUNCTION _wa_claim_due(max_messages integer, default_version text, budgets jsonb)
RETURNS TABLE (id bigint, channel_id bigint, max_per_second integer, attempts integer, phone_number_id text,
               graph_api_version text, access_token text, request text, recipient text, kind text, endpoint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The statistics of a queue are always out of date (a burst fills it faster than it is
-- analyzed), and on them a bitmap scan of a whole channel plus a sort can look cheapest. Only
-- index scans: a queue is then read in due order and the reading stops at the LIMIT. (No JIT:
-- the cost penalty of the disabled scans would make every turn compile, 190 ms, measured.)
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    chosen bigint[];
BEGIN
    -- Claims the messages due now, at most one per recipient (the oldest queued one, and none
    -- while one is in flight), so that messages to one customer go out in the order they were
    -- queued; and per channel at most its budget (the worker's token bucket, `budgets`:
    -- {"<channel id>": n}; a channel not in it may use its full per-second rate). Paused and
    -- disabled channels are not read at all, and a channel's queue is read in due order
    -- (wa_messages_due) only until its budget is found: a long queue costs nothing per claim.
    SELECT pg_catalog.array_agg(d.id) INTO chosen
      FROM (SELECT m.id
              FROM @extschema@.wa_channels c
             CROSS JOIN LATERAL (
                    SELECT m.id, m.next_attempt_at
                      FROM @extschema@.wa_messages m
                     CROSS JOIN LATERAL @extschema@._wa_queue_head(m.channel_id, m.recipient) head
                     WHERE m.channel_id = c.id AND m.status = 'queued' AND m.next_attempt_at <= pg_catalog.now()
                       AND head.id = m.id
                     ORDER BY m.next_attempt_at
                     -- (The channel's own rate too: the worker's budget is from before a change
                     -- of it. least() skips the NULL budget of a channel the worker has not seen.)
                     LIMIT least(max_messages, c.max_messages_per_second, (budgets ->> c.id::text)::integer)
                   ) m
             WHERE c.enabled AND c.paused_at IS NULL
             ORDER BY m.next_attempt_at
             LIMIT max_messages) d;
    -- By primary key: the claim must not become a join the planner could get wrong. (The
    -- status is compared as `status || ''` so that the planner cannot prove the partial index
    -- wa_messages_due applies: on statistics that say the queue is empty it read that whole
    -- index for every claim instead, 8,000 entries for 145 messages, measured on a full table.)
    RETURN QUERY
    UPDATE @extschema@.wa_messages m
       SET status = 'sending', attempts = m.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE m.id = ANY (chosen) AND m.status || '' = 'queued' AND c.id = m.channel_id AND s.channel_id = c.id
    RETURNING m.id, m.channel_id, c.max_messages_per_second, m.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token, m.payload::text, m.recipient, m.type,
              m.graph_endpoint;
END
$$;

CREATE OR REPLACE VIEW wa_conversations AS
SELECT s.channel_id, c.name AS channel, s.contact_id, k.wa_id, k.user_id, k.profile_name, k.username,
       s.last_message_id, s.last_direction, s.last_type, s.last_preview AS last_body,
       s.last_message_at, s.unread_count,
       COALESCE(k.last_inbound_at, g.last_inbound_at) AS last_customer_message_at,
       COALESCE(k.last_inbound_at, g.last_inbound_at) + interval '24 hours' AS window_closes_at,
       COALESCE(COALESCE(k.last_inbound_at, g.last_inbound_at) + interval '24 hours' > pg_catalog.now(), false) AS window_open,
       s.id AS conversation_id,
       s.group_id, g.subject AS group_subject, g.status AS group_status, k.saved_name
  FROM @extschema@.wa_conversation_state s
  JOIN @extschema@.wa_channels c ON c.id = s.channel_id
  LEFT JOIN @extschema@.wa_contacts k ON k.id = s.contact_id
  LEFT JOIN @extschema@.wa_groups g ON g.channel_id = s.channel_id AND g.group_id = s.group_id;

CREATE OR REPLACE FUNCTION _wa_rebuild_conversations(channel bigint DEFAULT NULL) RETURNS bigint
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

-- Nothing lost, nothing sent twice (issue 24).
--
-- Backups: every table that holds the user's data, and its identity sequence, is dumped by
-- pg_dump (sql/schema.sql, "Backups").
DO $$
DECLARE
    t text;
    seq text;
BEGIN
    FOREACH t IN ARRAY ARRAY['wa_channels', 'wa_channel_secrets', 'wa_contacts', 'wa_contact_former_ids', 'wa_calls',
                             'wa_groups', 'wa_webhook_events', 'wa_messages', 'wa_conversation_state',
                             'wa_message_statuses', 'wa_channel_counters', 'wa_templates', 'wa_media'] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(t::regclass, '');
        seq := (SELECT pg_catalog.pg_get_serial_sequence(t, a.attname) FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = t::regclass AND a.attidentity <> '');
        IF seq IS NOT NULL THEN
            PERFORM pg_catalog.pg_extension_config_dump(seq::regclass, '');
        END IF;
    END LOOP;
END
$$;

-- A restore copies messages back with their conversations: the outbound-conversation trigger
-- leaves rows that were not made in this transaction alone (sql/outbound.sql).
DROP TRIGGER wa_messages_outbound_conversation ON wa_messages;
CREATE CONSTRAINT TRIGGER wa_messages_outbound_conversation AFTER INSERT ON wa_messages
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.direction = 'outbound' AND (NEW.contact_id IS NOT NULL OR NEW.group_id IS NOT NULL) AND NOT NEW.from_history
                       AND NEW.created_at = pg_catalog.now())
    EXECUTE FUNCTION _wa_outbound_conversation();

-- Webhook events with items not stored for a database reason: 'incomplete', kept past their
-- retention until a replay stores them, and counted in the health view.
ALTER TABLE wa_webhook_events DROP CONSTRAINT wa_webhook_events_outcome_check;
ALTER TABLE wa_webhook_events ADD CONSTRAINT wa_webhook_events_outcome_check
    CHECK (outcome IN ('stored', 'partial', 'invalid_payload', 'incomplete'));
CREATE INDEX wa_webhook_events_incomplete ON wa_webhook_events (channel_id, id) WHERE outcome = 'incomplete';

-- Outages (a channel's Graph API unreachable: its queue waits and probes) and expiry.
ALTER TABLE wa_channels ADD COLUMN unreachable_since timestamptz, ADD COLUMN next_probe_at timestamptz,
                        ADD COLUMN authentication_template_ttl interval;
ALTER TABLE wa_messages ADD COLUMN idempotency_key text, ADD COLUMN expires_at timestamptz;
CREATE OR REPLACE VIEW wa_channel_health AS
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
       c.unreachable_since AS graph_api_unreachable_since
  FROM @extschema@.wa_channels c;

-- Statuses record the sends they name (biz_opaque_callback_data): a new argument.
DROP FUNCTION _wa_receive_statuses(bigint[], text[], text[], double precision[], text[], integer[], text[], text[], jsonb[], text[], text[], text[], boolean[], text[]);
CREATE FUNCTION _wa_receive_statuses(channels bigint[], wamids text[], statuses text[], status_ats double precision[],
                                     recipients text[], codes integer[], titles text[], details text[], payloads jsonb[],
                                     pricing_models text[], pricing_types text[], pricing_categories text[],
                                     billables boolean[], participants text[], outbox_ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
SET plan_cache_mode = force_generic_plan
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
        RETURNING x.id, x.wamid)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', r.id, 'wamid', r.wamid, 'status', 'sent')::text))
      INTO recorded_late
      FROM (SELECT * FROM recorded ORDER BY id) r;
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

-- Interrupted sends wait for their status before they are sent again.
DROP FUNCTION _wa_requeue_interrupted();
CREATE FUNCTION _wa_requeue_interrupted(resend_after double precision) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        UPDATE @extschema@.wa_messages m
           SET status = 'queued', updated_at = pg_catalog.now(),
               next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => resend_after)
         WHERE m.status = 'sending' RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM r
$$;

-- The claim skips unreachable channels but for their probe, and says which claims expired.
DROP FUNCTION _wa_claim_due(integer, text, jsonb);
CREATE FUNCTION _wa_claim_due(max_messages integer, default_version text, budgets jsonb)
RETURNS TABLE (id bigint, channel_id bigint, max_per_second integer, attempts integer, phone_number_id text,
               graph_api_version text, access_token text, request text, recipient text, kind text, endpoint text,
               probe boolean, expired boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The statistics of a queue are always out of date (a burst fills it faster than it is
-- analyzed), and on them a bitmap scan of a whole channel plus a sort can look cheapest. Only
-- index scans: a queue is then read in due order and the reading stops at the LIMIT. (No JIT:
-- the cost penalty of the disabled scans would make every turn compile, 190 ms, measured.)
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    chosen bigint[];
BEGIN
    -- Claims the messages due now, at most one per recipient (the oldest queued one, and none
    -- while one is in flight), so that messages to one customer go out in the order they were
    -- queued; and per channel at most its budget (the worker's token bucket, `budgets`:
    -- {"<channel id>": n}; a channel not in it may use its full per-second rate). Paused and
    -- disabled channels are not read at all, nor is an unreachable one (see
    -- wa_channels.unreachable_since) until its next probe, which is one message; a channel's
    -- queue is read in due order (wa_messages_due) only until its budget is found: a long
    -- queue costs nothing per claim.
    SELECT pg_catalog.array_agg(d.id) INTO chosen
      FROM (SELECT m.id
              FROM @extschema@.wa_channels c
             CROSS JOIN LATERAL (
                    SELECT m.id, m.next_attempt_at
                      FROM @extschema@.wa_messages m
                     CROSS JOIN LATERAL @extschema@._wa_queue_head(m.channel_id, m.recipient) head
                     WHERE m.channel_id = c.id AND m.status = 'queued' AND m.next_attempt_at <= pg_catalog.now()
                       AND head.id = m.id
                     ORDER BY m.next_attempt_at
                     -- (The channel's own rate too: the worker's budget is from before a change
                     -- of it. least() skips the NULL budget of a channel the worker has not seen.)
                     LIMIT least(max_messages, c.max_messages_per_second, (budgets ->> c.id::text)::integer,
                                 CASE WHEN c.unreachable_since IS NOT NULL THEN 1 END)
                   ) m
             WHERE c.enabled AND c.paused_at IS NULL AND (c.next_probe_at IS NULL OR c.next_probe_at <= pg_catalog.now())
             ORDER BY m.next_attempt_at
             LIMIT max_messages) d;
    -- By primary key: the claim must not become a join the planner could get wrong. (The
    -- status is compared as `status || ''` so that the planner cannot prove the partial index
    -- wa_messages_due applies: on statistics that say the queue is empty it read that whole
    -- index for every claim instead, 8,000 entries for 145 messages, measured on a full table.)
    RETURN QUERY
    UPDATE @extschema@.wa_messages m
       SET status = 'sending', attempts = m.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE m.id = ANY (chosen) AND m.status || '' = 'queued' AND c.id = m.channel_id AND s.channel_id = c.id
    RETURNING m.id, m.channel_id, c.max_messages_per_second, m.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token, m.payload::text, m.recipient, m.type,
              m.graph_endpoint, c.unreachable_since IS NOT NULL, COALESCE(m.expires_at <= pg_catalog.now(), false);
END
$$;

CREATE OR REPLACE FUNCTION _wa_next_due_in() RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (See _wa_claim_due.)
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    due timestamptz;
BEGIN
    SELECT least(
        -- (an unreachable channel's queue is due at its next probe at the soonest)
        (SELECT pg_catalog.min(greatest(h.next_attempt_at, c.next_probe_at))
           FROM @extschema@.wa_channels c
          CROSS JOIN LATERAL (
                SELECT m.next_attempt_at FROM @extschema@.wa_messages m
                 CROSS JOIN LATERAL @extschema@._wa_queue_head(m.channel_id, m.recipient) head
                 WHERE m.channel_id = c.id AND m.status = 'queued' AND head.id = m.id
                 ORDER BY m.next_attempt_at
                 LIMIT 1) h
          WHERE c.enabled AND c.paused_at IS NULL),
        -- media downloads waiting for a retry
        (SELECT pg_catalog.min(j.next_attempt_at) FROM @extschema@.wa_media j WHERE j.status = 'pending'))
      INTO due;
    -- (greatest() ignores NULL: nothing due must stay NULL, not become 0.)
    RETURN CASE WHEN due IS NOT NULL THEN greatest(0, extract(epoch FROM due - pg_catalog.now()))::double precision END;
END
$$;

CREATE FUNCTION _wa_channel_unreachable(channel bigint, since timestamptz, probe_in double precision) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_channels c
       SET unreachable_since = COALESCE(c.unreachable_since, since),
           next_probe_at = pg_catalog.now() + pg_catalog.make_interval(secs => probe_in)
     WHERE c.id = channel;
END;

CREATE FUNCTION _wa_channel_reachable(channel bigint) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_channels c SET unreachable_since = NULL, next_probe_at = NULL
     WHERE c.id = channel AND c.unreachable_since IS NOT NULL;
    UPDATE @extschema@.wa_messages m SET next_attempt_at = pg_catalog.now()
     WHERE m.channel_id = channel AND m.status = 'queued' AND m.next_attempt_at > pg_catalog.now();
END;

CREATE FUNCTION _wa_expire(msg_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH expired AS (
        UPDATE @extschema@.wa_messages x
           SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL, error_code = NULL,
               error_title = 'expired at ' || x.expires_at::text || ' before it could be sent: not sent late (expires_at)',
               error_details = NULL, error_hint = NULL, updated_at = pg_catalog.now()
         WHERE x.id = ANY (msg_ids) AND x.status || '' = 'sending'
        RETURNING x.id)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', e.id, 'wamid', NULL, 'status', 'failed')::text))
      FROM (SELECT expired.id FROM expired ORDER BY expired.id) e
$$;

-- Idempotent enqueue and expiry: wa_send_*(..., idempotency_key => ..., expires_at => ...).
CREATE UNIQUE INDEX wa_messages_idempotency_key ON wa_messages (channel_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE FUNCTION _wa_message_by_key(channel text, idempotency_key text) RETURNS bigint
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT m.id FROM @extschema@.wa_messages m
     WHERE m.channel_id = (SELECT c.id FROM @extschema@.wa_channels c WHERE c.name = _wa_message_by_key.channel)
       AND m.idempotency_key = _wa_message_by_key.idempotency_key;
END;

DROP FUNCTION _wa_enqueue(text, text, text, text, jsonb);
CREATE FUNCTION _wa_enqueue(channel text, recipient text, p_type text, p_body text, request jsonb,
                            idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    msg_id   bigint;
    sends    boolean;
    to_group boolean := COALESCE(request ->> 'recipient_type' = 'group', false);
    ch       @extschema@.wa_channels;
    contact  @extschema@.wa_contacts;
    grp      @extschema@.wa_groups;
    last_in  timestamptz;
BEGIN
    IF expires_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'expires_at % is not in the future', expires_at
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the time after which the message is no longer worth sending, e.g. now() + interval ''10 minutes''.';
    END IF;
    IF idempotency_key IS NOT NULL THEN
        msg_id := @extschema@._wa_message_by_key(channel, idempotency_key);
        IF msg_id IS NOT NULL THEN
            RETURN msg_id;
        END IF;
        -- Callers with the same key wait here for each other: the second one sees the first's
        -- message once it commits (read committed), or queues its own if the first rolled
        -- back. (The unique index wa_messages_idempotency_key is what guarantees one row.)
        -- (A hash collision only makes two callers wait for each other.)
        PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(channel), pg_catalog.hashtext(idempotency_key));
        msg_id := @extschema@._wa_message_by_key(channel, idempotency_key);
        IF msg_id IS NOT NULL THEN
            RETURN msg_id;
        END IF;
    END IF;
    -- One statement on the way in (the channel, the customer's 24-hour window and the row);
    -- only when it inserts nothing are the rules checked one by one, to say which one refused.
    IF p_type = 'text' THEN
        -- Text, most of what an inbox sends, has one derived column (the message it replies
        -- to): the other twenty of _wa_message_columns() are NULL for it, and computing them
        -- cost a tenth of an enqueue (measured).
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload,
                                              next_attempt_at, idempotency_key, expires_at, reply_to_wamid, voice, forwarded, frequently_forwarded)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body, 'queued', recipient, request, pg_catalog.now(),
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, request -> 'context' ->> 'message_id', false, false, false
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group) t
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    ELSE
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload, next_attempt_at,
                                              idempotency_key, expires_at, media_id, media_mime_type, media_sha256, media_filename,
                                              voice, latitude, longitude, location_name, location_address,
                                              reply_to_wamid, forwarded, frequently_forwarded, referral,
                                              reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                              button_payload, order_items, shared_contacts, system_type,
                                              original_wamid)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body, 'queued', recipient, request, pg_catalog.now(),
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, d.*
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group) t
         CROSS JOIN LATERAL @extschema@._wa_message_columns(p_type, request) d
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    END IF;
    IF msg_id IS NOT NULL THEN
        -- A paused channel's queue waits for wa_set_access_token() (or any change to the
        -- channel, see wa_channels_wake): no need to wake the worker for it.
        IF sends THEN
            PERFORM @extschema@._wa_wake_delivery();
        END IF;
        RETURN msg_id;
    END IF;

    SELECT * INTO ch FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF NOT ch.enabled THEN
        RAISE EXCEPTION 'channel % is disabled', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Enable it with UPDATE wa_channels SET enabled = true WHERE name = %L.', channel);
    END IF;
    IF to_group THEN
        SELECT * INTO grp FROM @extschema@.wa_groups g WHERE g.channel_id = ch.id AND g.group_id = recipient;
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a group of channel %', recipient, pg_catalog.quote_literal(channel)
                USING ERRCODE = 'undefined_object',
                      HINT = 'A group is known from its webhooks (subscribe the app to group_lifecycle_update) or its first message; see SELECT group_id, subject FROM wa_groups. A phone number needs its country code.';
        END IF;
        IF grp.status <> 'active' THEN
            RAISE EXCEPTION 'group % of channel % is %', recipient, pg_catalog.quote_literal(channel), pg_catalog.replace(grp.status, '_', ' ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = CASE grp.status WHEN 'suspended' THEN 'Meta suspended it; messages can be sent again once it clears the suspension (group_suspend_cleared).'
                                             ELSE 'Only an active group can be sent to; see wa_groups.last_event for what Meta said.' END;
        END IF;
        last_in := grp.last_inbound_at;
    ELSE
        SELECT * INTO contact FROM @extschema@.wa_contacts k
         WHERE k.channel_id = ch.id AND (k.wa_id = pg_catalog.ltrim(recipient, '+') OR k.user_id = recipient)
         ORDER BY k.last_inbound_at DESC NULLS LAST
         LIMIT 1;
        last_in := contact.last_inbound_at;
    END IF;
    IF p_type IN ('template', 'mark_read') OR ch.allow_outside_window
       OR last_in >= pg_catalog.now() - interval '24 hours' THEN
        -- The channel was enabled, the switch turned on or the customer wrote since the INSERT
        -- looked (a concurrent transaction): nothing refuses the message now, so the caller
        -- only needs to try again.
        RAISE EXCEPTION 'channel % changed while the message was being queued', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'serialization_failure', HINT = 'Try again.';
    END IF;
    RAISE EXCEPTION 'the 24-hour customer-service window with % is closed: %', CASE WHEN to_group THEN 'group ' ELSE '' END || recipient,
        CASE WHEN last_in IS NULL THEN CASE WHEN to_group THEN 'nobody has written in it' ELSE 'they have not written to channel ' || pg_catalog.quote_literal(channel) END
             ELSE 'the last message from ' || CASE WHEN to_group THEN 'a participant' ELSE 'them' END || ' was at ' || last_in::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Only an approved template can (re)open the conversation: use wa_send_template(). '
                  || 'To send anyway, UPDATE wa_channels SET allow_outside_window = true.';
END
$$;

-- The send functions take new last arguments, so they are made anew; the grants an
-- administrator gave on them (README, "Roles") are kept and given back to the new ones.
CREATE TABLE _wa_upgrade_send_grants AS
SELECT p.proname::text AS function_name, a.grantee::regrole::text AS grantee
  FROM pg_catalog.pg_proc p CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
 WHERE p.pronamespace = '@extschema@'::regnamespace
   AND p.proname IN ('wa_send_text', 'wa_send_media', 'wa_send_template', 'wa_send_interactive', 'wa_send_location', 'wa_send_reaction')
   AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner;
DROP FUNCTION wa_send_text(text, text, text, text, boolean);
DROP FUNCTION wa_send_media(text, text, text, text, text, text);
DROP FUNCTION wa_send_template(text, text, text, text, jsonb);
DROP FUNCTION wa_send_interactive(text, text, jsonb);
DROP FUNCTION wa_send_location(text, text, double precision, double precision, text, text);
DROP FUNCTION wa_send_reaction(text, text, text);
CREATE FUNCTION wa_send_text(channel text, recipient text, body text, reply_to text DEFAULT NULL, preview_url boolean DEFAULT false,
                             idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'text', body, @extschema@._wa_text_request(to_, body, reply_to, preview_url),
                                   idempotency_key, expires_at);
END
$$;

CREATE FUNCTION wa_send_media(channel text, recipient text, kind text, link_or_media_id text,
                              caption text DEFAULT NULL, filename text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                              expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, kind, caption,
                                   @extschema@._wa_media_request(to_, kind, link_or_media_id, caption, filename), idempotency_key,
                                   expires_at);
END
$$;

CREATE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_       text := @extschema@.wa_normalize_recipient(recipient);
    request   jsonb;
    category  text;
    marketing boolean;
    auth_ttl  interval;
    msg_id    bigint;
BEGIN
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    request := @extschema@._wa_template_request(to_, name, language, components);
    -- The template's category, as wa_sync_templates() and template webhooks left it (NULL when
    -- the channel's templates were never synced).
    SELECT pg_catalog.upper(t.category), c.marketing_messages, c.authentication_template_ttl INTO category, marketing, auth_ttl
      FROM @extschema@.wa_channels c
      LEFT JOIN @extschema@.wa_templates t ON t.channel_id = c.id AND t.name = wa_send_template.name AND t.language = wa_send_template.language
     WHERE c.name = channel;
    IF request ->> 'recipient_type' = 'group' AND category = 'AUTHENTICATION' THEN
        RAISE EXCEPTION 'template % (%) is an authentication template: Meta''s Groups API does not send those to groups', pg_catalog.quote_literal(name), language
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Send one-time codes to each person with wa_send_template(channel, ''<their number>'', ...).';
    END IF;
    -- A one-time code is worth nothing late: the channel's authentication_template_ttl applies.
    IF category = 'AUTHENTICATION' AND expires_at IS NULL THEN
        expires_at := pg_catalog.now() + auth_ttl;
    END IF;
    msg_id := @extschema@._wa_enqueue(channel, to_, 'template', name, request, idempotency_key, expires_at);
    -- A marketing template of a channel onboarded to the Marketing Messages API goes through it.
    IF marketing AND category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        UPDATE @extschema@.wa_messages m SET graph_endpoint = 'marketing_messages' WHERE m.id = msg_id;
    END IF;
    RETURN msg_id;
END
$$;

CREATE FUNCTION wa_send_interactive(channel text, recipient text, interactive jsonb, idempotency_key text DEFAULT NULL,
                                    expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', interactive #>> '{body,text}',
                                   @extschema@._wa_interactive_request(to_, interactive), idempotency_key, expires_at);
END
$$;

CREATE FUNCTION wa_send_location(channel text, recipient text, latitude double precision, longitude double precision,
                                 name text DEFAULT NULL, address text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'location', name,
                                   @extschema@._wa_location_request(to_, latitude, longitude, name, address), idempotency_key,
                                   expires_at);
END
$$;

CREATE FUNCTION wa_send_reaction(channel text, message_wamid text, emoji text, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@._wa_counterpart(channel, message_wamid);
BEGIN
    RETURN @extschema@._wa_enqueue(channel, to_, 'reaction', emoji, @extschema@._wa_reaction_request(to_, message_wamid, emoji),
                                   idempotency_key, expires_at);
END
$$;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT * FROM @extschema@._wa_upgrade_send_grants LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s',
            (SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.proname = g.function_name AND p.pronamespace = '@extschema@'::regnamespace), g.grantee);
    END LOOP;
END
$$;
DROP TABLE _wa_upgrade_send_grants;

-- The access token from a file on the server, so that it is in no statement text.
CREATE FUNCTION wa_set_access_token_from_file(channel text, path text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.wa_set_access_token(
        channel, pg_catalog.btrim(pg_catalog.split_part(pg_catalog.pg_read_file(path), E'\n', 1), E' \t\r'));
END
$$;

-- Issue 25: the rule of what is due, written once (_wa_queue_heads) for the claim and
-- _wa_next_due_in.
CREATE FUNCTION _wa_queue_heads(channel bigint) RETURNS TABLE (id bigint, next_attempt_at timestamptz)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT m.id, m.next_attempt_at
      FROM @extschema@.wa_messages m
     CROSS JOIN LATERAL @extschema@._wa_queue_head(m.channel_id, m.recipient) head
     WHERE m.channel_id = _wa_queue_heads.channel AND m.status = 'queued' AND head.id = m.id;
END;

CREATE OR REPLACE FUNCTION _wa_claim_due(max_messages integer, default_version text, budgets jsonb)
RETURNS TABLE (id bigint, channel_id bigint, max_per_second integer, attempts integer, phone_number_id text,
               graph_api_version text, access_token text, request text, recipient text, kind text, endpoint text,
               probe boolean, expired boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The statistics of a queue are always out of date (a burst fills it faster than it is
-- analyzed), and on them a bitmap scan of a whole channel plus a sort can look cheapest. Only
-- index scans: a queue is then read in due order and the reading stops at the LIMIT. (No JIT:
-- the cost penalty of the disabled scans would make every turn compile, 190 ms, measured.)
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    chosen bigint[];
BEGIN
    -- Claims the messages due now, at most one per recipient (the oldest queued one, and none
    -- while one is in flight), so that messages to one customer go out in the order they were
    -- queued; and per channel at most its budget (the worker's token bucket, `budgets`:
    -- {"<channel id>": n}; a channel not in it may use its full per-second rate). Paused and
    -- disabled channels are not read at all, nor is an unreachable one (see
    -- wa_channels.unreachable_since) until its next probe, which is one message; a channel's
    -- queue is read in due order (wa_messages_due) only until its budget is found: a long
    -- queue costs nothing per claim.
    SELECT pg_catalog.array_agg(d.id) INTO chosen
      FROM (SELECT m.id
              FROM @extschema@.wa_channels c
             CROSS JOIN LATERAL (
                    SELECT m.id, m.next_attempt_at
                      FROM @extschema@._wa_queue_heads(c.id) m
                     WHERE m.next_attempt_at <= pg_catalog.now()
                     ORDER BY m.next_attempt_at
                     -- (The channel's own rate too: the worker's budget is from before a change
                     -- of it. least() skips the NULL budget of a channel the worker has not seen.)
                     LIMIT least(max_messages, c.max_messages_per_second, (budgets ->> c.id::text)::integer,
                                 CASE WHEN c.unreachable_since IS NOT NULL THEN 1 END)
                   ) m
             WHERE c.enabled AND c.paused_at IS NULL AND (c.next_probe_at IS NULL OR c.next_probe_at <= pg_catalog.now())
             ORDER BY m.next_attempt_at
             LIMIT max_messages) d;
    -- By primary key: the claim must not become a join the planner could get wrong. (The
    -- status is compared as `status || ''` so that the planner cannot prove the partial index
    -- wa_messages_due applies: on statistics that say the queue is empty it read that whole
    -- index for every claim instead, 8,000 entries for 145 messages, measured on a full table.)
    RETURN QUERY
    UPDATE @extschema@.wa_messages m
       SET status = 'sending', attempts = m.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE m.id = ANY (chosen) AND m.status || '' = 'queued' AND c.id = m.channel_id AND s.channel_id = c.id
    RETURNING m.id, m.channel_id, c.max_messages_per_second, m.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token, m.payload::text, m.recipient, m.type,
              m.graph_endpoint, c.unreachable_since IS NOT NULL, COALESCE(m.expires_at <= pg_catalog.now(), false);
END
$$;

CREATE OR REPLACE FUNCTION _wa_next_due_in() RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (See _wa_claim_due.)
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    due timestamptz;
BEGIN
    SELECT least(
        -- (an unreachable channel's queue is due at its next probe at the soonest)
        (SELECT pg_catalog.min(greatest(h.next_attempt_at, c.next_probe_at))
           FROM @extschema@.wa_channels c
          CROSS JOIN LATERAL (
                SELECT m.next_attempt_at FROM @extschema@._wa_queue_heads(c.id) m
                 ORDER BY m.next_attempt_at
                 LIMIT 1) h
          WHERE c.enabled AND c.paused_at IS NULL),
        -- media downloads waiting for a retry
        (SELECT pg_catalog.min(j.next_attempt_at) FROM @extschema@.wa_media j WHERE j.status = 'pending'))
      INTO due;
    -- (greatest() ignores NULL: nothing due must stay NULL, not become 0.)
    RETURN CASE WHEN due IS NOT NULL THEN greatest(0, extract(epoch FROM due - pg_catalog.now()))::double precision END;
END
$$;

-- Issue 25: _wa_receive_messages in named steps, the rule of when a message opens a
-- window once (_wa_window_opened_at).
CREATE FUNCTION _wa_window_opened_at(msg_type text, ts double precision) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN msg_type <> 'system' THEN COALESCE(@extschema@._wa_unix_time(ts), pg_catalog.now()) END;

CREATE OR REPLACE FUNCTION _wa_receive_messages(
    channels bigint[], events bigint[], wamids text[], froms text[], from_user_ids text[], names text[], usernames text[],
    types text[], bodies text[], sent_ats double precision[], payloads jsonb[], group_ids text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Each statement below joins a batch (tens to thousands of rows) to tables of millions: only
-- nested loops over their unique indexes keep its cost independent of the tables' size, for a
-- batch of any size. (No JIT: nothing here runs long.)
-- Generic plans: those nested loops suit every batch size, and a custom plan per call (which
-- PL/pgSQL keeps choosing when a batch's size makes the generic estimate look worse) was a
-- third of the delivery worker's time in _wa_apply_statuses, measured with perf.
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- Each message's contact, in the order of the arrays (NULL: none yet, or no sender id).
    -- Arrays rather than a staging table: a temporary table is truncated at every commit,
    -- a tenth of the listener's time (perf).
    contacts   bigint[] := '{}';
    added      integer;
    media_jobs integer;
    changed    bigint[];
BEGIN
    -- In steps, each one statement for the whole batch. (Steps rather than a function each:
    -- every call of one would be one more executor start per batch on the listener's hottest
    -- path.)
    --   1. senders: each message's contact, found or created;
    --   2. contacts kept current;
    --   3. groups written in;
    --   4. messages, with their media jobs, conversations and notifications;
    --   5. what the new messages set going: the delivery worker for media, and changes to
    --      rows stored before them.

    -- 1. Senders. Each message's contact: by WhatsApp id first, else by BSUID, else by a BSUID
    -- it had before (each a probe of a unique index; as scalar subqueries, which no plan can
    -- turn into a scan of the contacts). Looked up once, and once more, for the rows still
    -- without one, after the senders seen for the first time were added. (`contacts` starts
    -- empty: unnest pads it with NULLs.)
    FOR pass IN 1..2 LOOP
        contacts := ARRAY(
            SELECT COALESCE(u.c,
                            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.wa_id = u.wa),
                            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.user_id = u.uid),
                            (SELECT f.contact_id FROM @extschema@.wa_contact_former_ids f
                              WHERE f.channel_id = u.ch AND f.user_id = u.uid))
              FROM unnest(contacts, channels, froms, from_user_ids) WITH ORDINALITY AS u(c, ch, wa, uid, ord)
             ORDER BY u.ord);
        EXIT WHEN pass = 2 OR NOT EXISTS (SELECT 1 FROM unnest(contacts, froms, from_user_ids) AS u(c, wa, uid)
                                           WHERE u.c IS NULL AND (u.wa IS NOT NULL OR u.uid IS NOT NULL));
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
    IF EXISTS (SELECT 1 FROM unnest(group_ids) AS g(id) WHERE g.id IS NOT NULL) THEN
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

    -- 4. Messages: the new ones (ins), with what each brings in the same statement: its media
    -- download job (media), its conversation moved forward (conversations for a contact's,
    -- group_conversations for a group's) and its wa_message notification (the SELECT at the
    -- end, which also collects what step 5 needs).
    WITH ins AS (
        INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, webhook_event_id, sent_at,
                                         group_id, edited_at, revoked_at,
                                         media_id, media_mime_type, media_sha256, media_filename,
                                         voice, latitude, longitude, location_name, location_address,
                                         reply_to_wamid, forwarded, frequently_forwarded, referral,
                                         reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                         button_payload, order_items, shared_contacts, system_type,
                                         original_wamid)
        SELECT i.channel_id, i.contact_id, 'inbound', i.wamid, i.type, i.body, 'received', i.payload, i.event_id,
               @extschema@._wa_unix_time(i.ts), i.group_id, later.edited_at, later.revoked_at, d.*
          FROM unnest(channels, events, wamids, contacts, types, bodies, sent_ats, payloads, group_ids)
               WITH ORDINALITY AS i(channel_id, event_id, wamid, contact_id, type, body, ts, payload, group_id, ord)
         CROSS JOIN LATERAL @extschema@._wa_message_columns(i.type, i.payload) d
         -- An edit or revoke of this message that arrived before it.
         CROSS JOIN LATERAL (SELECT pg_catalog.max(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'edit') AS edited_at,
                                    pg_catalog.min(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'revoke') AS revoked_at
                               FROM @extschema@.wa_messages e
                              WHERE e.channel_id = i.channel_id AND e.original_wamid = i.wamid) later
         ORDER BY i.ord
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING id, channel_id, contact_id, group_id, type, body, created_at, media_id, media_mime_type, media_sha256, system_type, original_wamid
    ), media AS (
        INSERT INTO @extschema@.wa_media (message_id, channel_id, media_id, mime_type, expected_sha256)
        SELECT ins.id, ins.channel_id, ins.media_id, ins.media_mime_type, ins.media_sha256 FROM ins WHERE ins.media_id IS NOT NULL
        RETURNING 1
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
    ), group_conversations AS (
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, group_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT n.channel_id, n.group_id, n.id, n.created_at, 'inbound', n.type, pg_catalog.left(n.body, 200), n.unread
          FROM (SELECT DISTINCT ON (ins.channel_id, ins.group_id) ins.*,
                       pg_catalog.count(*) OVER (PARTITION BY ins.channel_id, ins.group_id) AS unread
                  FROM ins WHERE ins.group_id IS NOT NULL
                 ORDER BY ins.channel_id, ins.group_id, ins.id DESC) n
         ORDER BY n.channel_id, n.group_id
        ON CONFLICT (channel_id, group_id) WHERE group_id IS NOT NULL DO UPDATE
           SET unread_count = s.unread_count + excluded.unread_count,
               last_message_id = greatest(s.last_message_id, excluded.last_message_id),
               last_message_at = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_message_at ELSE s.last_message_at END,
               last_direction = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_direction ELSE s.last_direction END,
               last_type = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_type ELSE s.last_type END,
               last_preview = CASE WHEN excluded.last_message_id > s.last_message_id THEN excluded.last_preview ELSE s.last_preview END
    )
    -- (A data-modifying WITH runs to its end whether or not it is read: conversations too.)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_message', pg_catalog.json_build_object(
               'id', n.id, 'channel', n.name, 'type', n.type, 'contact_id', n.contact_id, 'group_id', n.group_id)::text)),
           (SELECT pg_catalog.count(*) FROM media),
           (SELECT pg_catalog.array_agg(ins.id ORDER BY ins.id) FROM ins
             WHERE ins.system_type IN ('user_changed_number', 'user_changed_user_id') OR ins.original_wamid IS NOT NULL)
      INTO added, media_jobs, changed
      FROM (SELECT ins.id, c.name, ins.type, ins.contact_id, ins.group_id FROM ins JOIN @extschema@.wa_channels c ON c.id = ins.channel_id
             ORDER BY ins.id) n;

    -- 5. What the new messages set going.
    IF media_jobs > 0 THEN
        PERFORM @extschema@._wa_wake_delivery(); -- the delivery worker downloads media too
    END IF;
    IF changed IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_message_changes(changed);
    END IF;
    RETURN added;
END
$$;

-- Issue 25: the derived message columns are defined once, as the type _wa_message_derived, which
-- a fresh install's wa_messages takes with LIKE (this database's table already has the same
-- columns) and which _wa_message_columns() returns. Its callers are PL/pgSQL, so it can be
-- dropped and created again with the new return type.
-- The queryable columns of a message derived from its payload by _wa_message_columns()
-- (sql/model.sql), the same way for inbound messages and outbound requests (both carry Meta's
-- "<type>": {...} object), and for events re-processed after an upgrade. Defined once, here:
-- wa_messages takes them with LIKE and _wa_message_columns() returns this type. (Not generated
-- columns: Postgres re-reads those expressions for every INSERT, which cost more than half of
-- an enqueue.)
CREATE TYPE _wa_message_derived AS (
    media_id             text,
    media_mime_type      text,
    media_sha256         text,
    media_filename       text,
    voice                boolean,
    latitude             double precision,
    longitude            double precision,
    location_name        text,
    location_address     text,
    reply_to_wamid       text,
    forwarded            boolean,
    frequently_forwarded boolean,
    referral             jsonb,
    reaction_to_wamid    text,
    reaction_emoji       text,
    interactive_reply_id text,
    button_payload       text,
    order_items          jsonb,
    shared_contacts      jsonb,
    system_type          text,
    original_wamid       text
);

DROP FUNCTION _wa_message_columns(text, jsonb);

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

-- Issue 25: a NULL where a value is required is an ERROR that names the argument (22004), so
-- these functions, STRICT in 0.1.0 (a NULL answered NULL and skipped the check), now see it.
ALTER FUNCTION _wa_check_access_token(text) CALLED ON NULL INPUT;
ALTER FUNCTION _wa_interactive_request(text, jsonb) CALLED ON NULL INPUT;
ALTER FUNCTION _wa_mark_read_request(text, boolean) CALLED ON NULL INPUT;
ALTER FUNCTION wa_sync_templates(text) CALLED ON NULL INPUT;

-- Issue 25: the planner settings of the hot paths, given in one place (sql/plans.sql). Later
-- upgrade scripts only call _wa_plan_hot_paths().
-- The functions of this extension with these names: members of it (pg_depend), never a
-- function of the same name that someone else created in a shared schema.
CREATE FUNCTION _wa_own_functions(names text[]) RETURNS SETOF regprocedure
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid
     WHERE d.classid = 'pg_catalog.pg_proc'::regclass
       AND d.refclassid = 'pg_catalog.pg_extension'::regclass
       AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'whatsapp_channel')
       AND d.deptype = 'e'
       AND p.proname = ANY (names);
END;

CREATE FUNCTION _wa_plan_hot_paths() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan record;
    f regprocedure;
BEGIN
    FOR plan IN VALUES
        -- Batch writes. Each statement joins a batch (tens to thousands of rows) to tables of
        -- millions: only nested loops over their unique indexes keep its cost independent of
        -- the tables' size, for a batch of any size. (No JIT: nothing here runs long.) Generic
        -- plans: those nested loops suit every batch size, and a custom plan per call (which
        -- PL/pgSQL keeps choosing when a batch's size makes the generic estimate look worse)
        -- was a third of the delivery worker's time in _wa_apply_statuses, measured with perf.
        (ARRAY['_wa_receive_messages', '_wa_receive_statuses', '_wa_apply_statuses', '_wa_receive_echoes',
               '_wa_receive_history'],
         'SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off SET plan_cache_mode = force_generic_plan'),
        -- A batch join of the delivery worker: a turn's accepted sends to their messages, the
        -- same nested loops, and generic plans for the same reason: planned again at every
        -- turn, its UPDATE and its locking read cost 280 and 315 µs of planning against 230
        -- and 66 of execution (pg_stat_statements, 200 sends a second, one a turn).
        (ARRAY['_wa_mark_sent_all'],
         'SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off SET plan_cache_mode = force_generic_plan'),
        -- Queue reads. The statistics of a queue are always out of date (a burst fills it
        -- faster than it is analyzed), and on them a bitmap scan of a whole channel plus a sort
        -- can look cheapest. Only index scans: a queue is then read in due order and the
        -- reading stops at the LIMIT. (No JIT: the cost penalty of the disabled scans would
        -- make every turn compile, 190 ms, measured.) Generic plans: the claim's UPDATE by
        -- primary key was planned again at every turn, 460 µs of planning against 165 of
        -- execution (measured as above).
        (ARRAY['_wa_claim_due', '_wa_next_due_in'],
         'SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off SET plan_cache_mode = force_generic_plan')
    LOOP
        IF (SELECT count(*) FROM @extschema@._wa_own_functions(plan.column1)) <> pg_catalog.cardinality(plan.column1) THEN
            RAISE EXCEPTION 'a function of % does not exist (a rename not made in sql/plans.sql?)', plan.column1;
        END IF;
        FOR f IN SELECT * FROM @extschema@._wa_own_functions(plan.column1)
        LOOP
            EXECUTE pg_catalog.format('ALTER FUNCTION %s %s', f, plan.column2);
        END LOOP;
    END LOOP;
END
$$;

SELECT _wa_plan_hot_paths();

-- ---------------------------------------------------------------------------------------------
-- Channels as the unit of access (sql/grants.sql): channel grants, row-level security on every
-- table of a channel's data, security_invoker views, and a check at the top of every SECURITY
-- DEFINER function of the API.
-- Channels are the unit of access (README, "Roles"): a role sees a channel's rows when it holds
-- `read` on it, and sends on it when it holds `send`; `admin` (for every channel, present and
-- future: channel_id NULL) sees and does everything, as the extension owner does. The order of
-- the labels is the order of the privileges: each includes the ones before it.
CREATE TYPE wa_channel_privilege AS ENUM ('read', 'send', 'admin');

-- One row per channel and role (a grant of `send` replaces `read`). The role is kept by oid
-- (regrole), so a renamed role keeps its grants; pg_dump writes its name.
CREATE TABLE wa_channel_grants (
    channel_id bigint REFERENCES wa_channels (id) ON DELETE CASCADE,
    grantee    regrole NOT NULL,
    privilege  wa_channel_privilege NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((privilege = 'admin') = (channel_id IS NULL)),
    CONSTRAINT wa_channel_grants_key UNIQUE NULLS NOT DISTINCT (channel_id, grantee)
);
COMMENT ON TABLE wa_channel_grants IS 'Who may read or send on which channel: change it with wa_grant_channel() and wa_revoke_channel().';
SELECT pg_catalog.pg_extension_config_dump('wa_channel_grants', '');

CREATE FUNCTION "_wa_caller"() RETURNS TEXT /* String */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_caller_wrapper';

CREATE FUNCTION "_wa_visible_channels"(
	"viewer" TEXT /* &str */
) RETURNS bigint[] /* alloc::vec::Vec<i64> */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_visible_channels_wrapper';

CREATE FUNCTION "_wa_visibility_changed"(
	"relid" oid /* pg_sys :: Oid */
) RETURNS void
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_visibility_changed_wrapper';

-- Whether a role may do everything: a superuser or BYPASSRLS role (row-level security does not
-- filter them anyway), one that has the privileges of the extension's owner, or one that holds
-- the `admin` grant. USAGE (inherited privileges), not MEMBER: a NOINHERIT login role that may
-- SET ROLE to an agent has none of the agent's channels until it does. (A role may ask only
-- about a role it could SET ROLE to.)
CREATE FUNCTION _wa_is_admin(r name) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pg_catalog.pg_has_role(@extschema@._wa_caller(), r, 'MEMBER')
       AND (EXISTS (SELECT FROM pg_catalog.pg_roles a WHERE a.rolname = r AND (a.rolsuper OR a.rolbypassrls))
            OR pg_catalog.pg_has_role(r, (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'whatsapp_channel'), 'USAGE')
            OR EXISTS (SELECT FROM @extschema@.wa_channel_grants g
                        WHERE g.channel_id IS NULL AND g.privilege = 'admin' AND pg_catalog.pg_has_role(r, g.grantee, 'USAGE')));
END
$$;

-- The channels a role may read. The policies read them through _wa_visible_channels (Rust,
-- src/channels/access.rs), which keeps the answer until the grants, the channels or the roles
-- change (_wa_grants_changed, below): the policed tables of a query, and the statements after
-- it, ask once.
-- SECURITY DEFINER because a policy on wa_channels cannot read wa_channels as the querier (it
-- would recurse). A role may ask only for a role it could become (SET ROLE): no learning
-- another tenant's channel ids. PL/pgSQL, not SQL: its plans are kept for the session (a SQL
-- function that cannot be inlined is planned on every call). PARALLEL SAFE, as _wa_is_admin
-- and _wa_visible_channels: a function the planner must call in the leader only would keep
-- every query of a policed table out of parallel plans, for everyone but the owner.
CREATE FUNCTION _wa_channels_visible_to(viewer name) RETURNS bigint[]
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(@extschema@._wa_caller(), viewer, 'MEMBER') THEN
        RETURN '{}';
    ELSIF @extschema@._wa_is_admin(viewer) THEN
        RETURN (SELECT COALESCE(pg_catalog.array_agg(c.id ORDER BY c.id), '{}') FROM @extschema@.wa_channels c);
    END IF;
    RETURN (SELECT COALESCE(pg_catalog.array_agg(DISTINCT g.channel_id), '{}') FROM @extschema@.wa_channel_grants g
             WHERE g.channel_id IS NOT NULL AND pg_catalog.pg_has_role(viewer, g.grantee, 'USAGE'));
END
$$;

-- The id of the channel a SECURITY DEFINER function of the API is about to act on, if the
-- calling role holds `needed` on it (`admin`: if it is an admin). The first thing such a
-- function does: before any other
-- check, since those describe the channel's customers, templates and messages. A role without
-- the privilege gets the same error whether the channel exists or not.
CREATE FUNCTION _wa_require_channel(channel text, needed wa_channel_privilege) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller  name := @extschema@._wa_caller();
    ch_id   bigint;
    granted boolean;
BEGIN
    -- One lookup of the channel answers both a grantee and an admin (the owner's sends).
    SELECT c.id, EXISTS (SELECT FROM @extschema@.wa_channel_grants g
                          WHERE g.channel_id = c.id AND g.privilege >= needed AND pg_catalog.pg_has_role(caller, g.grantee, 'USAGE'))
      INTO ch_id, granted
      FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF granted THEN
        RETURN ch_id;
    END IF;
    IF @extschema@._wa_is_admin(caller) THEN
        IF ch_id IS NULL THEN
            RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
                USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
        END IF;
        RETURN ch_id;
    END IF;
    RAISE EXCEPTION 'permission denied for channel %: role % needs the % privilege on it', pg_catalog.quote_literal(channel), caller, needed
        USING ERRCODE = 'insufficient_privilege',
              HINT = CASE WHEN needed = 'admin'
                          THEN pg_catalog.format('The extension owner grants it (for every channel): SELECT wa_grant_channel(NULL, %L, ''admin'').', caller::text)
                          ELSE pg_catalog.format('The extension owner or an admin grants it: SELECT wa_grant_channel(%L, %L, %L). See the channels you may use with SELECT name FROM wa_channels.',
                                                 channel, caller::text, needed) END;
END
$$;

-- Refuses a role that is not an admin (see _wa_is_admin): adding channels, setting their
-- credentials, replaying webhooks and managing grants.
CREATE FUNCTION _wa_require_admin(action text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller name := @extschema@._wa_caller();
BEGIN
    IF NOT @extschema@._wa_is_admin(caller) THEN
        RAISE EXCEPTION 'permission denied to %: role % is not a whatsapp_channel admin', action, caller
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The extension owner, a superuser or a role granted admin does it; the owner grants admin with SELECT wa_grant_channel(NULL, ''role'', ''admin'').';
    END IF;
END
$$;

-- The tables that hold a channel's data, and the column naming the channel: row-level security
-- is on for each, with the policies below, from CREATE EXTENSION on (before any grant, nobody
-- but an admin reads a row). pg_dump writes neither an extension table's policies nor its
-- ENABLE ROW LEVEL SECURITY: the restore's CREATE EXTENSION makes them, and the grants come
-- back as rows (tests/e2e/tests/backup.rs).
CREATE FUNCTION _wa_channel_tables() RETURNS TABLE (table_name regclass, channel_column name)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT t.table_name::regclass, t.channel_column::name
      FROM (VALUES ('@extschema@.wa_channels', 'id'), ('@extschema@.wa_contacts', 'channel_id'),
                   ('@extschema@.wa_contact_former_ids', 'channel_id'), ('@extschema@.wa_calls', 'channel_id'),
                   ('@extschema@.wa_groups', 'channel_id'), ('@extschema@.wa_webhook_events', 'channel_id'),
                   ('@extschema@.wa_messages', 'channel_id'), ('@extschema@.wa_conversation_state', 'channel_id'),
                   ('@extschema@.wa_message_statuses', 'channel_id'), ('@extschema@.wa_channel_counters', 'channel_id'),
                   ('@extschema@.wa_templates', 'channel_id'), ('@extschema@.wa_media', 'channel_id'))
           AS t (table_name, channel_column);
END;

-- Drops the extension's own policies of a table, to make them again (a DBA's are left alone).
CREATE FUNCTION _wa_drop_policies(t regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p name;
BEGIN
    FOR p IN SELECT x.polname FROM pg_catalog.pg_policy x
              WHERE x.polrelid = t AND x.polname IN ('wa_channel_read', 'wa_admin_insert', 'wa_admin_update', 'wa_admin_delete', 'wa_grants_read') LOOP
        EXECUTE pg_catalog.format('DROP POLICY %I ON %s', p, t);
    END LOOP;
END
$$;

-- What each read policy asks, once per row it filters: the channels the current role may read
-- (Rust, src/channels/access.rs: made once per execution of a statement, then kept in the
-- call's own memory, so a grant or revoke takes effect on the next statement and the other rows
-- cost a function call). In an index condition (`channel_id = ANY (...)`) it is asked once per
-- scan. Declared here, not by pgrx, which would build the array again at every row.
CREATE FUNCTION _wa_visible_channels() RETURNS bigint[]
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'wa_visible_channels_of_current_user';

-- (Re)makes the policies: reading a row takes `read` on its channel; writing one directly
-- (not through the API's functions) takes admin. The read policy is
-- `channel_id = ANY (_wa_visible_channels())`: an index condition where the plan reads by
-- channel, a filter elsewhere. (Not a sub-select: an InitPlan costs 3 µs at every execution,
-- docs/benchmarks/2026-12-07-issue-26-policy-cost.md.) Idempotent: run by CREATE EXTENSION and
-- by an upgrade script that changes a policy.
CREATE FUNCTION _wa_apply_policies() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    admin_only text := '(SELECT @extschema@._wa_is_admin(CURRENT_USER))';
BEGIN
    FOR t IN SELECT * FROM @extschema@._wa_channel_tables() LOOP
        PERFORM @extschema@._wa_drop_policies(t.table_name);
        EXECUTE pg_catalog.format('CREATE POLICY wa_channel_read ON %s FOR SELECT USING (%I = ANY (@extschema@._wa_visible_channels()))',
                                  t.table_name, t.channel_column);
        EXECUTE pg_catalog.format('CREATE POLICY wa_admin_insert ON %s FOR INSERT WITH CHECK (%s)', t.table_name, admin_only);
        EXECUTE pg_catalog.format('CREATE POLICY wa_admin_update ON %s FOR UPDATE USING (%s)', t.table_name, admin_only);
        EXECUTE pg_catalog.format('CREATE POLICY wa_admin_delete ON %s FOR DELETE USING (%s)', t.table_name, admin_only);
    END LOOP;
    -- A role sees the grants it has the privileges of; an admin sees all of them.
    PERFORM @extschema@._wa_drop_policies('@extschema@.wa_channel_grants');
    CREATE POLICY wa_grants_read ON @extschema@.wa_channel_grants FOR SELECT
        USING (pg_catalog.pg_has_role(CURRENT_USER, grantee, 'USAGE') OR (SELECT @extschema@._wa_is_admin(CURRENT_USER)));
END
$$;

DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT table_name FROM @extschema@._wa_channel_tables() LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    END LOOP;
END
$$;
SELECT _wa_apply_policies();
-- The credentials: no policy at all, so only the owner (and superusers) read them, whatever
-- is granted.
ALTER TABLE wa_channel_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE wa_channel_grants ENABLE ROW LEVEL SECURITY;

-- Each session keeps _wa_visible_channels' answer until it may have changed (see
-- src/channels/access.rs): a change of the grants, or of the channels (an admin sees every one),
-- sends every session the invalidation that makes it read them again at its next statement
-- (this session: at its next command; nothing, if the transaction rolls back). Changes to
-- roles and role membership send their own. SECURITY DEFINER: an admin who writes the grants
-- directly needs no EXECUTE on the function that sends it.
--   Row triggers, ENABLE ALWAYS: a logical replication subscriber applies rows with
-- session_replication_role = replica, which fires no statement trigger and no ordinary one.
-- TRUNCATE has its own (a second TRUNCATE in one transaction changes no catalog row). Not on
-- other updates of wa_channels: the delivery worker updates them, and each invalidation makes
-- every plan that reads wa_channels be made again.
CREATE FUNCTION _wa_grants_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._wa_visibility_changed(TG_RELID);
    RETURN NULL;
END
$$;
CREATE TRIGGER wa_channel_grants_visibility AFTER INSERT OR UPDATE OR DELETE ON wa_channel_grants
    FOR EACH ROW EXECUTE FUNCTION _wa_grants_changed();
CREATE TRIGGER wa_channel_grants_truncated AFTER TRUNCATE ON wa_channel_grants
    FOR EACH STATEMENT EXECUTE FUNCTION _wa_grants_changed();
CREATE TRIGGER wa_channels_visibility AFTER INSERT OR DELETE OR UPDATE OF id ON wa_channels
    FOR EACH ROW EXECUTE FUNCTION _wa_grants_changed();
CREATE TRIGGER wa_channels_truncated AFTER TRUNCATE ON wa_channels
    FOR EACH STATEMENT EXECUTE FUNCTION _wa_grants_changed();
ALTER TABLE wa_channel_grants ENABLE ALWAYS TRIGGER wa_channel_grants_visibility;
ALTER TABLE wa_channel_grants ENABLE ALWAYS TRIGGER wa_channel_grants_truncated;
ALTER TABLE wa_channels ENABLE ALWAYS TRIGGER wa_channels_visibility;
ALTER TABLE wa_channels ENABLE ALWAYS TRIGGER wa_channels_truncated;

-- Grants `privilege` on a channel to a role (`admin`: channel NULL, every channel). Grants
-- only add: `read` where the role holds `send` changes nothing. Takes effect on the role's next
-- statement.
CREATE FUNCTION wa_grant_channel(channel text, role regrole, privilege wa_channel_privilege DEFAULT 'send') RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch_id bigint;
BEGIN
    PERFORM @extschema@._wa_require_admin('grant channel privileges');
    IF role IS NULL OR privilege IS NULL THEN
        RAISE EXCEPTION 'wa_grant_channel needs a role and a privilege'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'e.g. SELECT wa_grant_channel(''support'', ''agent_a'', ''send'').';
    END IF;
    IF privilege = 'admin' THEN
        IF channel IS NOT NULL THEN
            RAISE EXCEPTION 'admin is granted for every channel: give NULL as the channel, not %', pg_catalog.quote_literal(channel)
                USING ERRCODE = 'invalid_parameter_value', HINT = pg_catalog.format('SELECT wa_grant_channel(NULL, %L, ''admin''), or grant read or send on the channel.', role::text);
        END IF;
    ELSE
        IF channel IS NULL THEN
            RAISE EXCEPTION 'a % grant needs a channel', privilege
                USING ERRCODE = 'null_value_not_allowed', HINT = 'Name the channel (SELECT name FROM wa_channels); only admin is granted for every channel.';
        END IF;
        ch_id := @extschema@._wa_require_channel(channel, 'read');
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles a WHERE a.oid = role AND (a.rolsuper OR a.rolbypassrls)) THEN
        RAISE NOTICE 'role % is a superuser or has BYPASSRLS: it sees and does everything without a grant', role;
    END IF;
    INSERT INTO @extschema@.wa_channel_grants AS g (channel_id, grantee, privilege)
    VALUES (ch_id, role, privilege)
    ON CONFLICT ON CONSTRAINT wa_channel_grants_key DO UPDATE SET privilege = excluded.privilege, granted_at = pg_catalog.now()
     WHERE g.privilege < excluded.privilege;
END
$$;

-- Revokes a role's privilege on a channel (NULL: all of it; `admin`: channel NULL). Revoking
-- `send` leaves `read`. Returns whether anything changed.
CREATE FUNCTION wa_revoke_channel(channel text, role regrole, privilege wa_channel_privilege DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch_id   bigint;
    changed integer;
BEGIN
    PERFORM @extschema@._wa_require_admin('revoke channel privileges');
    IF channel IS NOT NULL THEN
        ch_id := @extschema@._wa_require_channel(channel, 'read');
    ELSIF privilege IS DISTINCT FROM 'admin' THEN
        RAISE EXCEPTION 'revoking % needs a channel', COALESCE(privilege::text, 'every privilege')
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Name the channel; only admin is revoked with a NULL channel.';
    END IF;
    IF privilege = 'send' THEN
        UPDATE @extschema@.wa_channel_grants g SET privilege = 'read', granted_at = pg_catalog.now()
         WHERE g.channel_id = ch_id AND g.grantee = role AND g.privilege = 'send';
    ELSE
        DELETE FROM @extschema@.wa_channel_grants g
         WHERE g.channel_id IS NOT DISTINCT FROM ch_id AND g.grantee = role;
    END IF;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed > 0;
END
$$;

-- Who holds what: an admin sees every grant, any other role the grants it has the privileges of.
CREATE VIEW wa_channel_access WITH (security_invoker = true) AS
SELECT g.channel_id, c.name AS channel, g.grantee::text AS role, g.privilege, g.granted_at
  FROM @extschema@.wa_channel_grants g
  LEFT JOIN @extschema@.wa_channels c ON c.id = g.channel_id;
COMMENT ON VIEW wa_channel_access IS 'Channel grants: which role may read or send on which channel (admin: every channel).';

-- A dropped role's grants (DROP ROLE does not look at regrole columns, and its oid may later
-- be given to a new role): deleted by the maintenance worker.
CREATE FUNCTION _wa_purge_dropped_grantees() RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH gone AS (
        DELETE FROM @extschema@.wa_channel_grants g
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles a WHERE a.oid = g.grantee)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM gone;
END;

CREATE OR REPLACE FUNCTION wa_send_text(channel text, recipient text, body text, reply_to text DEFAULT NULL, preview_url boolean DEFAULT false,
                             idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'text', body, @extschema@._wa_text_request(to_, body, reply_to, preview_url),
                                   idempotency_key, expires_at);
END
$$;

CREATE OR REPLACE FUNCTION wa_send_media(channel text, recipient text, kind text, link_or_media_id text,
                              caption text DEFAULT NULL, filename text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                              expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, kind, caption,
                                   @extschema@._wa_media_request(to_, kind, link_or_media_id, caption, filename), idempotency_key,
                                   expires_at);
END
$$;

CREATE OR REPLACE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_       text := @extschema@.wa_normalize_recipient(recipient);
    request   jsonb;
    category  text;
    marketing boolean;
    auth_ttl  interval;
    msg_id    bigint;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    request := @extschema@._wa_template_request(to_, name, language, components);
    -- The template's category, as wa_sync_templates() and template webhooks left it (NULL when
    -- the channel's templates were never synced).
    SELECT pg_catalog.upper(t.category), c.marketing_messages, c.authentication_template_ttl INTO category, marketing, auth_ttl
      FROM @extschema@.wa_channels c
      LEFT JOIN @extschema@.wa_templates t ON t.channel_id = c.id AND t.name = wa_send_template.name AND t.language = wa_send_template.language
     WHERE c.name = channel;
    IF request ->> 'recipient_type' = 'group' AND category = 'AUTHENTICATION' THEN
        RAISE EXCEPTION 'template % (%) is an authentication template: Meta''s Groups API does not send those to groups', pg_catalog.quote_literal(name), language
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Send one-time codes to each person with wa_send_template(channel, ''<their number>'', ...).';
    END IF;
    -- A one-time code is worth nothing late: the channel's authentication_template_ttl applies.
    IF category = 'AUTHENTICATION' AND expires_at IS NULL THEN
        expires_at := pg_catalog.now() + auth_ttl;
    END IF;
    msg_id := @extschema@._wa_enqueue(channel, to_, 'template', name, request, idempotency_key, expires_at);
    -- A marketing template of a channel onboarded to the Marketing Messages API goes through it.
    IF marketing AND category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        UPDATE @extschema@.wa_messages m SET graph_endpoint = 'marketing_messages' WHERE m.id = msg_id;
    END IF;
    RETURN msg_id;
END
$$;

CREATE OR REPLACE FUNCTION wa_send_interactive(channel text, recipient text, interactive jsonb, idempotency_key text DEFAULT NULL,
                                    expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', interactive #>> '{body,text}',
                                   @extschema@._wa_interactive_request(to_, interactive), idempotency_key, expires_at);
END
$$;

CREATE OR REPLACE FUNCTION wa_send_location(channel text, recipient text, latitude double precision, longitude double precision,
                                 name text DEFAULT NULL, address text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'location', name,
                                   @extschema@._wa_location_request(to_, latitude, longitude, name, address), idempotency_key,
                                   expires_at);
END
$$;

CREATE OR REPLACE FUNCTION wa_send_reaction(channel text, message_wamid text, emoji text, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    to_ := @extschema@._wa_counterpart(channel, message_wamid);
    RETURN @extschema@._wa_enqueue(channel, to_, 'reaction', emoji, @extschema@._wa_reaction_request(to_, message_wamid, emoji),
                                   idempotency_key, expires_at);
END
$$;

CREATE OR REPLACE FUNCTION wa_mark_read(channel text, message_wamid text, typing boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    to_ := @extschema@._wa_counterpart(channel, message_wamid);
    RETURN @extschema@._wa_enqueue(channel, to_, 'mark_read', NULL, @extschema@._wa_mark_read_request(message_wamid, typing));
END
$$;

CREATE OR REPLACE FUNCTION wa_set_access_token(channel text, access_token text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch_id bigint;
BEGIN
    PERFORM @extschema@._wa_check_access_token(access_token);
    ch_id := @extschema@._wa_require_channel(channel, 'admin');
    UPDATE @extschema@.wa_channel_secrets s SET access_token = wa_set_access_token.access_token WHERE s.channel_id = ch_id;
    -- (wa_channels_wake wakes the delivery worker for the resumed queue.)
    UPDATE @extschema@.wa_channels c SET paused_at = NULL, paused_reason = NULL WHERE c.id = ch_id;
    -- (SKIP LOCKED: the delivery worker may hold one of them while it waits for this call's
    -- credentials row in _wa_media_waits_for_token, and waiting for it would deadlock. A
    -- download it is putting back for the old token becomes due with the new one there;
    -- another it recorded in the same turn keeps its own due time.)
    UPDATE @extschema@.wa_media j SET next_attempt_at = pg_catalog.now()
     WHERE j.message_id IN (SELECT w.message_id FROM @extschema@.wa_media w
                             WHERE w.channel_id = ch_id AND w.status = 'pending' AND w.next_attempt_at > pg_catalog.now()
                               FOR UPDATE SKIP LOCKED);
    IF FOUND THEN
        PERFORM @extschema@._wa_wake_media();
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION wa_media_content(message_id bigint) RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT j.content FROM @extschema@.wa_media j
     WHERE j.message_id = wa_media_content.message_id AND j.status = 'done'
       AND j.channel_id = ANY (@extschema@._wa_visible_channels(@extschema@._wa_caller()));
END;

ALTER VIEW wa_conversations SET (security_invoker = true);
ALTER VIEW wa_channel_health SET (security_invoker = true);
ALTER VIEW wa_message_costs SET (security_invoker = true);

-- Before this version a role granted the API could use every channel: it keeps that, as
-- grants (admin for a role that may call wa_add_channel or wa_set_access_token, send for one
-- that may call wa_send_text, read for one that may read wa_messages), so that an upgrade
-- changes nothing a deployment sees. Narrow them with wa_revoke_channel().
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT a.grantee::regrole AS role, pg_catalog.max(a.privilege) AS privilege
          FROM (SELECT x.grantee, CASE WHEN p.proname = 'wa_send_text' THEN 'send' ELSE 'admin' END::@extschema@.wa_channel_privilege AS privilege
                  FROM pg_catalog.pg_proc p CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) x
                 WHERE p.oid IN ('@extschema@.wa_send_text(text, text, text, text, boolean, text, timestamptz)'::regprocedure,
                                 '@extschema@.wa_add_channel(text, text, text, text, text, text)'::regprocedure,
                                 '@extschema@.wa_set_access_token(text, text)'::regprocedure)
                   AND x.privilege_type = 'EXECUTE' AND x.grantee <> 0 AND x.grantee <> p.proowner
                UNION ALL
                SELECT x.grantee, 'read'
                  FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) x
                 WHERE c.oid = '@extschema@.wa_messages'::regclass
                   AND x.privilege_type = 'SELECT' AND x.grantee <> 0 AND x.grantee <> c.relowner) a
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles s WHERE s.oid = a.grantee AND (s.rolsuper OR s.rolbypassrls))
         GROUP BY a.grantee
    LOOP
        IF r.privilege = 'admin' THEN
            INSERT INTO @extschema@.wa_channel_grants (channel_id, grantee, privilege) VALUES (NULL, r.role, 'admin');
        ELSE
            INSERT INTO @extschema@.wa_channel_grants (channel_id, grantee, privilege)
            SELECT c.id, r.role, r.privilege FROM @extschema@.wa_channels c;
        END IF;
        RAISE NOTICE 'role % keeps % on every channel: channels are now granted to roles one by one (README, "Roles")', r.role, r.privilege
            USING HINT = 'See SELECT * FROM wa_channel_access; narrow it with wa_revoke_channel().';
    END LOOP;
END
$$;

-- Privileges, as in sql/privileges.sql: no function of the extension for PUBLIC but the pure
-- helpers, so that a function added above is closed until granted. Later upgrade scripts only
-- call _wa_apply_privileges().
CREATE FUNCTION _wa_apply_privileges() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT d.objid::regprocedure
          FROM pg_catalog.pg_depend d
         WHERE d.classid = 'pg_catalog.pg_proc'::regclass
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'whatsapp_channel')
           AND d.deptype = 'e'
           -- What every read policy calls keeps its default privileges (PUBLIC may execute
           -- it): each read of a policed table checks them at every execution, and a default
           -- ACL is checked without reading one from the catalog (0.2 µs of a 10 µs history
           -- read, docs/benchmarks/2026-12-07-issue-26-policy-cost.md, section 6).
           AND d.objid <> '@extschema@._wa_visible_channels()'::pg_catalog.regprocedure
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    -- Pure helpers: they read no table and hold no secret, so anyone may call them.
    GRANT EXECUTE ON FUNCTION @extschema@.wa_verify_signature(text, bytea, text) TO PUBLIC;
    GRANT EXECUTE ON FUNCTION @extschema@.wa_verify_signature(text, text, text) TO PUBLIC;
    GRANT EXECUTE ON FUNCTION @extschema@.wa_normalize_phone(text) TO PUBLIC;
    GRANT EXECUTE ON FUNCTION @extschema@.wa_normalize_recipient(text) TO PUBLIC;
    GRANT EXECUTE ON FUNCTION @extschema@.wa_error_hint(integer) TO PUBLIC;
    -- What the row-level security policies call, as the role reading the table (sql/grants.sql;
    -- each answers a role only about roles it could SET ROLE to).
    GRANT EXECUTE ON FUNCTION @extschema@._wa_visible_channels(text) TO PUBLIC;
    GRANT EXECUTE ON FUNCTION @extschema@._wa_channels_visible_to(name) TO PUBLIC;
    GRANT EXECUTE ON FUNCTION @extschema@._wa_is_admin(name) TO PUBLIC;
    -- ... unless something gave it privileges of its own (ALTER DEFAULT PRIVILEGES ... REVOKE
    -- EXECUTE ON FUNCTIONS FROM PUBLIC, a REVOKE on all functions of the schema): then PUBLIC
    -- gets EXECUTE back, or every policed read by an agent would fail.
    IF (SELECT p.proacl FROM pg_catalog.pg_proc p
         WHERE p.oid = '@extschema@._wa_visible_channels()'::pg_catalog.regprocedure) IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION @extschema@._wa_visible_channels() TO PUBLIC;
    END IF;
END
$$;

SELECT _wa_apply_privileges();

-- Issue 26: notifications carry only ids (LISTEN needs no privilege, so a payload must not
-- say anything a listener may not read: the reader reads the row, through its own privileges).
-- The functions that notify, as in sql/*.sql.
CREATE OR REPLACE FUNCTION _wa_receive_messages(
    channels bigint[], events bigint[], wamids text[], froms text[], from_user_ids text[], names text[], usernames text[],
    types text[], bodies text[], sent_ats double precision[], payloads jsonb[], group_ids text[])
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
    added      integer;
    media_jobs integer;
    changed    bigint[];
BEGIN
    -- In steps, each one statement for the whole batch. (Steps rather than a function each:
    -- every call of one would be one more executor start per batch on the listener's hottest
    -- path.)
    --   1. senders: each message's contact, found or created;
    --   2. contacts kept current;
    --   3. groups written in;
    --   4. messages, with their media jobs, conversations and notifications;
    --   5. what the new messages set going: the delivery worker for media, and changes to
    --      rows stored before them.

    -- 1. Senders. Each message's contact: by WhatsApp id first, else by BSUID, else by a BSUID
    -- it had before (each a probe of a unique index; as scalar subqueries, which no plan can
    -- turn into a scan of the contacts). Looked up once, and once more, for the rows still
    -- without one, after the senders seen for the first time were added. (`contacts` starts
    -- empty: unnest pads it with NULLs.)
    FOR pass IN 1..2 LOOP
        contacts := ARRAY(
            SELECT COALESCE(u.c,
                            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.wa_id = u.wa),
                            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = u.ch AND k.user_id = u.uid),
                            (SELECT f.contact_id FROM @extschema@.wa_contact_former_ids f
                              WHERE f.channel_id = u.ch AND f.user_id = u.uid))
              FROM unnest(contacts, channels, froms, from_user_ids) WITH ORDINALITY AS u(c, ch, wa, uid, ord)
             ORDER BY u.ord);
        EXIT WHEN pass = 2 OR NOT EXISTS (SELECT 1 FROM unnest(contacts, froms, from_user_ids) AS u(c, wa, uid)
                                           WHERE u.c IS NULL AND (u.wa IS NOT NULL OR u.uid IS NOT NULL));
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
    IF EXISTS (SELECT 1 FROM unnest(group_ids) AS g(id) WHERE g.id IS NOT NULL) THEN
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

    -- 4. Messages: the new ones (ins), with what each brings in the same statement: its media
    -- download job (media), its conversation moved forward (conversations for a contact's,
    -- group_conversations for a group's) and its wa_message notification (the SELECT at the
    -- end, which also collects what step 5 needs).
    WITH ins AS (
        INSERT INTO @extschema@.wa_messages (channel_id, contact_id, direction, wamid, type, body, status, payload, webhook_event_id, sent_at,
                                         group_id, edited_at, revoked_at,
                                         media_id, media_mime_type, media_sha256, media_filename,
                                         voice, latitude, longitude, location_name, location_address,
                                         reply_to_wamid, forwarded, frequently_forwarded, referral,
                                         reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                         button_payload, order_items, shared_contacts, system_type,
                                         original_wamid)
        SELECT i.channel_id, i.contact_id, 'inbound', i.wamid, i.type, i.body, 'received', i.payload, i.event_id,
               @extschema@._wa_unix_time(i.ts), i.group_id, later.edited_at, later.revoked_at, d.*
          FROM unnest(channels, events, wamids, contacts, types, bodies, sent_ats, payloads, group_ids)
               WITH ORDINALITY AS i(channel_id, event_id, wamid, contact_id, type, body, ts, payload, group_id, ord)
         CROSS JOIN LATERAL @extschema@._wa_message_columns(i.type, i.payload) d
         -- An edit or revoke of this message that arrived before it.
         CROSS JOIN LATERAL (SELECT pg_catalog.max(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'edit') AS edited_at,
                                    pg_catalog.min(COALESCE(e.sent_at, e.created_at)) FILTER (WHERE e.type = 'revoke') AS revoked_at
                               FROM @extschema@.wa_messages e
                              WHERE e.channel_id = i.channel_id AND e.original_wamid = i.wamid) later
         ORDER BY i.ord
        ON CONFLICT (channel_id, wamid) DO NOTHING
        RETURNING id, channel_id, contact_id, group_id, type, body, created_at, media_id, media_mime_type, media_sha256, system_type, original_wamid
    ), media AS (
        INSERT INTO @extschema@.wa_media (message_id, channel_id, media_id, mime_type, expected_sha256)
        SELECT ins.id, ins.channel_id, ins.media_id, ins.media_mime_type, ins.media_sha256 FROM ins WHERE ins.media_id IS NOT NULL
        RETURNING 1
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
    ), group_conversations AS (
        INSERT INTO @extschema@.wa_conversation_state AS s
               (channel_id, group_id, last_message_id, last_message_at, last_direction, last_type, last_preview, unread_count)
        SELECT n.channel_id, n.group_id, n.id, n.created_at, 'inbound', n.type, pg_catalog.left(n.body, 200), n.unread
          FROM (SELECT DISTINCT ON (ins.channel_id, ins.group_id) ins.*,
                       pg_catalog.count(*) OVER (PARTITION BY ins.channel_id, ins.group_id) AS unread
                  FROM ins WHERE ins.group_id IS NOT NULL
                 ORDER BY ins.channel_id, ins.group_id, ins.id DESC) n
         ORDER BY n.channel_id, n.group_id
        ON CONFLICT (channel_id, group_id) WHERE group_id IS NOT NULL DO UPDATE
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
           (SELECT pg_catalog.count(*) FROM media),
           (SELECT pg_catalog.array_agg(ins.id ORDER BY ins.id) FROM ins
             WHERE ins.system_type IN ('user_changed_number', 'user_changed_user_id') OR ins.original_wamid IS NOT NULL)
      INTO added, media_jobs, changed
      FROM (SELECT ins.id, ins.channel_id, ins.contact_id FROM ins ORDER BY ins.id) n;

    -- 5. What the new messages set going.
    IF media_jobs > 0 THEN
        PERFORM @extschema@._wa_wake_delivery(); -- the delivery worker downloads media too
    END IF;
    IF changed IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_message_changes(changed);
    END IF;
    RETURN added;
END
$$;

CREATE OR REPLACE FUNCTION _wa_receive_echoes(channels bigint[], wamids text[], recipients text[], types text[],
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

CREATE OR REPLACE FUNCTION _wa_receive_history(channels bigint[], wamids text[], customers text[], from_business boolean[],
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

CREATE OR REPLACE FUNCTION _wa_history_chunk(channel bigint, phase integer, chunk_order integer, progress integer,
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

CREATE OR REPLACE FUNCTION _wa_receive_calls(channels bigint[], call_ids text[], froms text[], tos text[], events text[],
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

CREATE OR REPLACE FUNCTION _wa_receive_group_events(channels bigint[], group_ids text[], kinds text[], ats double precision[],
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
        n.invite_link := COALESCE(r.link, g.invite_link);
        n.join_approval_mode := COALESCE(r.mode, g.join_approval_mode);
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
                  AND (n.subject, n.description, n.invite_link, n.join_approval_mode, n.status, n.status_at, n.participants)
                      IS NOT DISTINCT FROM
                      (g.subject, g.description, g.invite_link, g.join_approval_mode, g.status, g.status_at, g.participants);
        UPDATE @extschema@.wa_groups x
           SET subject = n.subject, description = n.description, invite_link = n.invite_link,
               join_approval_mode = n.join_approval_mode, status = n.status, status_at = n.status_at,
               participants = n.participants, last_event = r.pl, updated_at = pg_catalog.now()
         WHERE x.channel_id = r.ch AND x.group_id = r.gid;
        PERFORM pg_catalog.pg_notify('wa_group', pg_catalog.json_build_object('channel_id', r.ch)::text);
        changed := changed + 1;
    END LOOP;
    RETURN changed;
END
$$;

CREATE OR REPLACE FUNCTION _wa_apply_statuses(channels bigint[], wamids text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a batch write: see sql/plans.sql.)
AS $$
DECLARE
    moved integer;
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
        RETURNING m.id, m.channel_id, t.moves
    )
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object(
               'id', n.id, 'channel_id', n.channel_id)::text))
      INTO moved
      FROM (SELECT upd.* FROM upd WHERE upd.moves ORDER BY upd.id) n;
    RETURN moved;
END
$$;

CREATE OR REPLACE FUNCTION _wa_receive_statuses(channels bigint[], wamids text[], statuses text[], status_ats double precision[],
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

CREATE OR REPLACE FUNCTION _wa_finish_media(p_message_id bigint, p_status text, p_mime_type text, p_sha256 text, p_size bigint,
                                 p_content bytea, p_error text, retry_in double precision) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    channel bigint;
BEGIN
    IF retry_in IS NOT NULL THEN
        UPDATE @extschema@.wa_media j
           SET status = 'pending', next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => retry_in),
               error = p_error, updated_at = pg_catalog.now()
         WHERE j.message_id = p_message_id AND j.status = 'downloading';
        RETURN;
    END IF;
    UPDATE @extschema@.wa_media j
       SET status = p_status, mime_type = COALESCE(p_mime_type, j.mime_type), sha256 = p_sha256, size = p_size,
           content = p_content, error = p_error, updated_at = pg_catalog.now()
     WHERE j.message_id = p_message_id AND j.status = 'downloading'
    RETURNING j.channel_id INTO channel;
    IF FOUND THEN
        PERFORM pg_catalog.pg_notify('wa_media', pg_catalog.json_build_object('message_id', p_message_id, 'channel_id', channel)::text);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION _wa_expire(msg_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH expired AS (
        UPDATE @extschema@.wa_messages x
           SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL, error_code = NULL,
               error_title = 'expired at ' || x.expires_at::text || ' before it could be sent: not sent late (expires_at)',
               error_details = NULL, error_hint = NULL, updated_at = pg_catalog.now()
         WHERE x.id = ANY (msg_ids) AND x.status || '' = 'sending'
        RETURNING x.id, x.channel_id)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', e.id, 'channel_id', e.channel_id)::text))
      FROM (SELECT expired.id, expired.channel_id FROM expired ORDER BY expired.id) e
$$;

CREATE OR REPLACE FUNCTION _wa_mark_sent_all(msg_ids bigint[], p_wamids text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a batch join: see sql/plans.sql.)
AS $$
DECLARE
    sent_channels bigint[];
    sent_wamids   text[];
BEGIN
    -- Serialises with _wa_receive_statuses for the same wamids, in the same (bytewise wamid)
    -- order, so the two never deadlock and no early status is missed by both.
    PERFORM pg_catalog.count(pg_catalog.pg_advisory_xact_lock(k.lock))
       FROM (SELECT @extschema@._wa_wamid_lock(x.channel_id, u.w) AS lock
               FROM unnest(msg_ids, p_wamids) AS u(id, w)
               JOIN @extschema@.wa_messages x ON x.id = u.id
              WHERE u.w IS NOT NULL
              ORDER BY u.w COLLATE "C", x.channel_id OFFSET 0) k;
    WITH sent AS (
        UPDATE @extschema@.wa_messages x
           SET status = 'sent', wamid = u.w, sent_at = pg_catalog.now(), next_attempt_at = NULL,
               error_code = NULL, error_title = NULL, error_details = NULL, error_hint = NULL,
               updated_at = pg_catalog.now()
          FROM unnest(msg_ids, p_wamids) AS u(id, w)
         WHERE x.id = u.id AND x.status || '' = 'sending'
        RETURNING x.id, x.channel_id, u.w
    ), notified AS (
        SELECT sent.channel_id, sent.w,
               pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', sent.id, 'channel_id', sent.channel_id)::text)
          FROM sent ORDER BY sent.id
    )
    -- Statuses that arrived before these wamids were known (usually none: one probe each).
    SELECT pg_catalog.array_agg(n.channel_id), pg_catalog.array_agg(n.w) INTO sent_channels, sent_wamids
      FROM notified n
     WHERE n.w IS NOT NULL
       AND EXISTS (SELECT 1 FROM @extschema@.wa_message_statuses h WHERE h.channel_id = n.channel_id AND h.wamid = n.w);
    IF sent_wamids IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_statuses(sent_channels, sent_wamids);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION _wa_mark_failed(msg_id bigint, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    channel bigint;
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL,
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status || '' = 'sending'
    RETURNING x.channel_id INTO channel;
    IF FOUND THEN
        PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', msg_id, 'channel_id', channel)::text);
    END IF;
END
$$;

-- CREATE OR REPLACE gave the hot paths above their default planner settings back.
SELECT _wa_plan_hot_paths();
-- (end of issue 26: notifications carry only ids)

-- Issue 27 (items 1 and 2): marketing opt-outs, enforced, and structured replies (Flows,
-- addresses, call permissions), readable.
ALTER TABLE wa_contacts ADD COLUMN marketing_opt_out_at timestamptz, ADD COLUMN marketing_preference_at timestamptz;
ALTER TABLE wa_messages ADD COLUMN flow_response jsonb, ADD COLUMN flow_token text;

-- The contact a preference is about: by WhatsApp id, else by BSUID (current, else former);
-- created when the channel has none, so that a customer who opts out before ever writing is
-- refused marketing all the same.
CREATE FUNCTION _wa_preference_contact(channel bigint, p_wa_id text, p_user_id text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    IF p_wa_id IS NULL AND p_user_id IS NULL THEN
        RETURN NULL;
    END IF;
    FOR pass IN 1..2 LOOP
        found_id := COALESCE(
            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = channel AND k.wa_id = p_wa_id),
            (SELECT k.id FROM @extschema@.wa_contacts k WHERE k.channel_id = channel AND k.user_id = p_user_id),
            (SELECT f.contact_id FROM @extschema@.wa_contact_former_ids f WHERE f.channel_id = channel AND f.user_id = p_user_id));
        EXIT WHEN found_id IS NOT NULL OR pass = 2;
        INSERT INTO @extschema@.wa_contacts (channel_id, wa_id, user_id) VALUES (channel, p_wa_id, p_user_id)
        ON CONFLICT DO NOTHING;
    END LOOP;
    RETURN found_id;
END
$$;

-- One contact's marketing preference as of `at`: stopped (marketing_opt_out_at keeps the first
-- time of an unbroken opt-out) or resumed (NULL). Applied only when `at` is newer than the
-- preference the contact has, so events applied in any order end the same. A change is
-- notified on wa_contact (ids only, like every notification). Returns whether it changed.
CREATE FUNCTION _wa_set_marketing_preference(contact bigint, stopped boolean, at timestamptz) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_ timestamptz;
    after_   timestamptz;
    channel  bigint;
BEGIN
    SELECT k.marketing_opt_out_at INTO before_ FROM @extschema@.wa_contacts k WHERE k.id = contact FOR UPDATE;
    UPDATE @extschema@.wa_contacts k
       SET marketing_opt_out_at = CASE WHEN stopped THEN COALESCE(k.marketing_opt_out_at, at) END,
           marketing_preference_at = at, updated_at = pg_catalog.now()
     WHERE k.id = contact AND (k.marketing_preference_at IS NULL OR k.marketing_preference_at < at)
    RETURNING k.marketing_opt_out_at, k.channel_id INTO after_, channel;
    IF NOT FOUND OR before_ IS NOT DISTINCT FROM after_ THEN
        RETURN false;
    END IF;
    PERFORM pg_catalog.pg_notify('wa_contact', pg_catalog.json_build_object('id', contact, 'channel_id', channel)::text);
    RETURN true;
END
$$;

-- Marketing preferences from webhooks (user_preferences items, and user_preference_changed
-- system messages, which the parser reads as the same), in order: `preferences` are Meta's
-- words, 'stop' or 'resume'; `ats` Meta's unix times (now when Meta sent none). Returns how
-- many contacts changed.
CREATE FUNCTION _wa_apply_marketing_preferences(channels bigint[], wa_ids text[], user_ids text[], preferences text[],
                                                ats double precision[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    changed integer := 0;
BEGIN
    FOR r IN SELECT * FROM unnest(channels, wa_ids, user_ids, preferences, ats) WITH ORDINALITY
                           AS u(ch, wa, uid, pref, ts, ord) ORDER BY u.ord LOOP
        IF r.pref NOT IN ('stop', 'resume') THEN
            RAISE EXCEPTION 'marketing preference % is neither stop nor resume', pg_catalog.quote_literal(r.pref)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF @extschema@._wa_set_marketing_preference(@extschema@._wa_preference_contact(r.ch, r.wa, r.uid), r.pref = 'stop',
                                                    COALESCE(@extschema@._wa_unix_time(r.ts), pg_catalog.now())) THEN
            changed := changed + 1;
        END IF;
    END LOOP;
    RETURN changed;
END
$$;

-- Meta refused these outbound messages with 131050 (the customer stopped marketing messages):
-- their contacts are marked opted out as of the failure, unless a newer preference says
-- otherwise. A message to a customer not yet a contact makes them one.
CREATE FUNCTION _wa_note_marketing_refusals(message_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT x.id, x.channel_id, x.contact_id, x.recipient, COALESCE(x.failed_at, pg_catalog.now()) AS at
               FROM @extschema@.wa_messages x
              WHERE x.id = ANY (message_ids) AND x.direction = 'outbound' AND x.group_id IS NULL
              ORDER BY x.id LOOP
        PERFORM @extschema@._wa_set_marketing_preference(
            COALESCE(m.contact_id,
                     @extschema@._wa_preference_contact(m.channel_id,
                                                        CASE WHEN m.recipient LIKE '+%' THEN pg_catalog.ltrim(m.recipient, '+') END,
                                                        CASE WHEN m.recipient NOT LIKE '+%' THEN m.recipient END)),
            true, m.at);
    END LOOP;
END
$$;

-- Refuses a marketing template to a customer who stopped marketing messages (called by
-- wa_send_template for a MARKETING template to a person). Meta would refuse it too (131050),
-- after the business paid for it in quality rating.
CREATE FUNCTION _wa_refuse_marketing_opt_out(channel text, recipient text, template text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opted_out timestamptz;
BEGIN
    SELECT pg_catalog.max(k.marketing_opt_out_at) INTO opted_out
      FROM @extschema@.wa_contacts k
     WHERE k.channel_id = (SELECT c.id FROM @extschema@.wa_channels c WHERE c.name = channel)
       AND (k.wa_id = pg_catalog.ltrim(recipient, '+') OR k.user_id = recipient);
    IF opted_out IS NOT NULL THEN
        RAISE EXCEPTION 'the customer % stopped marketing messages from this business on %: template % is a MARKETING template',
                        recipient, pg_catalog.to_char(opted_out AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
                        pg_catalog.quote_literal(template)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only the customer can take it back, by resuming marketing messages from this business in WhatsApp '
                      || '(wa_contacts.marketing_opt_out_at is cleared when Meta says so); until then send them a utility '
                      || 'template, or a free-form message within 24 hours of their last one.';
    END IF;
END
$$;

-- The write path of messages takes each structured reply's answers and Flow token.
DROP FUNCTION _wa_receive_messages(bigint[], bigint[], text[], text[], text[], text[], text[], text[], text[], double precision[],
                                   jsonb[], text[]);
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


CREATE OR REPLACE FUNCTION _wa_apply_statuses(channels bigint[], wamids text[]) RETURNS integer
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


CREATE OR REPLACE FUNCTION _wa_mark_failed(msg_id bigint, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    channel bigint;
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL,
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status || '' = 'sending'
    RETURNING x.channel_id INTO channel;
    IF FOUND THEN
        PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', msg_id, 'channel_id', channel)::text);
        -- Meta's word that the customer stopped marketing messages (sql/inbound_preferences.sql).
        IF p_code = 131050 THEN
            PERFORM @extschema@._wa_note_marketing_refusals(ARRAY[msg_id]);
        END IF;
    END IF;
END
$$;


CREATE OR REPLACE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_       text := @extschema@.wa_normalize_recipient(recipient);
    request   jsonb;
    category  text;
    marketing boolean;
    auth_ttl  interval;
    msg_id    bigint;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    request := @extschema@._wa_template_request(to_, name, language, components);
    -- The template's category, as wa_sync_templates() and template webhooks left it (NULL when
    -- the channel's templates were never synced).
    SELECT pg_catalog.upper(t.category), c.marketing_messages, c.authentication_template_ttl INTO category, marketing, auth_ttl
      FROM @extschema@.wa_channels c
      LEFT JOIN @extschema@.wa_templates t ON t.channel_id = c.id AND t.name = wa_send_template.name AND t.language = wa_send_template.language
     WHERE c.name = channel;
    IF category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        PERFORM @extschema@._wa_refuse_marketing_opt_out(channel, to_, name);
    END IF;
    IF request ->> 'recipient_type' = 'group' AND category = 'AUTHENTICATION' THEN
        RAISE EXCEPTION 'template % (%) is an authentication template: Meta''s Groups API does not send those to groups', pg_catalog.quote_literal(name), language
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Send one-time codes to each person with wa_send_template(channel, ''<their number>'', ...).';
    END IF;
    -- A one-time code is worth nothing late: the channel's authentication_template_ttl applies.
    IF category = 'AUTHENTICATION' AND expires_at IS NULL THEN
        expires_at := pg_catalog.now() + auth_ttl;
    END IF;
    msg_id := @extschema@._wa_enqueue(channel, to_, 'template', name, request, idempotency_key, expires_at);
    -- A marketing template of a channel onboarded to the Marketing Messages API goes through it.
    IF marketing AND category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        UPDATE @extschema@.wa_messages m SET graph_endpoint = 'marketing_messages' WHERE m.id = msg_id;
    END IF;
    RETURN msg_id;
END
$$;


-- The inbox's list shows whether a contact opted out of marketing.
CREATE OR REPLACE VIEW wa_conversations WITH (security_invoker = true) AS
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

-- The new and replaced functions: their planner settings and privileges, as a fresh install has them.
SELECT _wa_plan_hot_paths();
SELECT _wa_apply_privileges();
-- (end of issue 27, items 1 and 2)

-- (issue 27, items 3-5: channel and account health, template state, unknown fields)
ALTER TABLE wa_channels ADD COLUMN display_phone_number text;
ALTER TABLE wa_templates ADD COLUMN quality_score text, ADD COLUMN quality_at timestamptz, ADD COLUMN status_at timestamptz,
    ADD COLUMN previous_category text, ADD COLUMN category_changes_at timestamptz, ADD COLUMN category_at timestamptz,
    ADD COLUMN needs_sync_since timestamptz;

-- What Meta said about a channel's business (its account, its number, its templates), a
-- webhook-level error, or a webhook field this version does not understand: one row per event
-- and channel, with what the extension did about it.
CREATE TYPE wa_channel_event_kind AS ENUM (
    'account_update', 'account_alert', 'account_review', 'phone_number_quality', 'phone_number_name',
    'business_capability', 'template_status', 'template_quality', 'template_category', 'template_components',
    'webhook_error', 'unknown_field');

CREATE TABLE wa_channel_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id       bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    kind             wa_channel_event_kind NOT NULL,
    -- Meta's webhook field (changes[].field).
    field            text NOT NULL,
    -- When Meta says it happened (entry[].time), else when it was received.
    event_at         timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Meta's words, on one line.
    summary          text NOT NULL,
    -- What the event says about the channel (quality_rating, messaging_limit, throughput,
    -- account_status, account_event, display_name_status, send_rate_cap, stops_sending): only
    -- the keys Meta stated. wa_channel_health reads the latest of each.
    facts            jsonb NOT NULL DEFAULT '{}',
    -- The changes[].value (or the one error) as Meta sent it.
    payload          jsonb NOT NULL,
    -- What the extension did: the send rate lowered, the queue paused, a template updated...
    -- (NULL: recorded only).
    action           text,
    -- The raw POST it came in (kept for whatsapp_channel.webhook_retention).
    webhook_event_id bigint
);
CREATE INDEX wa_channel_events_latest ON wa_channel_events (channel_id, kind, event_at DESC, id DESC);
-- Meta redelivers, and a replay stores a POST again: the same event (kind, Meta's time and
-- payload) is recorded, and acted on, once per channel.
CREATE UNIQUE INDEX wa_channel_events_once ON wa_channel_events (channel_id, kind, event_at, pg_catalog.md5(payload::text));

SELECT pg_catalog.pg_extension_config_dump('wa_channel_events'::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('wa_channel_events', 'id')::regclass, '');

CREATE OR REPLACE FUNCTION _wa_channel_tables() RETURNS TABLE (table_name regclass, channel_column name)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT t.table_name::regclass, t.channel_column::name
      FROM (VALUES ('@extschema@.wa_channels', 'id'), ('@extschema@.wa_contacts', 'channel_id'),
                   ('@extschema@.wa_contact_former_ids', 'channel_id'), ('@extschema@.wa_calls', 'channel_id'),
                   ('@extschema@.wa_groups', 'channel_id'), ('@extschema@.wa_webhook_events', 'channel_id'),
                   ('@extschema@.wa_messages', 'channel_id'), ('@extschema@.wa_conversation_state', 'channel_id'),
                   ('@extschema@.wa_message_statuses', 'channel_id'), ('@extschema@.wa_channel_counters', 'channel_id'),
                   ('@extschema@.wa_templates', 'channel_id'), ('@extschema@.wa_media', 'channel_id'),
                   ('@extschema@.wa_channel_events', 'channel_id'))
           AS t (table_name, channel_column);
END;

-- Row-level security for the new table, as CREATE EXTENSION makes it.
ALTER TABLE wa_channel_events ENABLE ROW LEVEL SECURITY;
SELECT _wa_apply_policies();

DROP FUNCTION _wa_apply_template_status(bigint, text, text, text, text, text, text);

-- The channels an event is for. A change that names its number (metadata.phone_number_id: a
-- webhook-level error, an unknown field of a number) goes to that number's channel. Account
-- fields arrive on the WhatsApp Business Account's entry (entry[].id) with no number: they go
-- to every channel whose waba_id is that account, and number-level ones (quality, display name,
-- which carry display_phone_number) only to the channel of that number when channels set
-- display_phone_number. Only channels of the posting channel's app (the same app secret), as
-- for messages; if none of them names the account, the posting channel, when its waba_id is unset.
CREATE FUNCTION _wa_channel_event_targets(posting_channel bigint, p_phone_number_id text, business_account text,
                                          p_display_phone_number text) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    app text := (SELECT s.app_secret FROM @extschema@.wa_channel_secrets s WHERE s.channel_id = posting_channel);
    found_any boolean := false;
    ch bigint;
BEGIN
    FOR ch IN
        SELECT c.id FROM @extschema@.wa_channels c JOIN @extschema@.wa_channel_secrets s ON s.channel_id = c.id
         WHERE s.app_secret = app
           AND CASE WHEN p_phone_number_id IS NOT NULL THEN c.phone_number_id = p_phone_number_id
                    ELSE c.waba_id = business_account
                         AND (p_display_phone_number IS NULL OR c.display_phone_number IS NULL
                              OR c.display_phone_number = p_display_phone_number) END
         ORDER BY c.id
    LOOP
        found_any := true;
        RETURN NEXT ch;
    END LOOP;
    IF NOT found_any AND p_phone_number_id IS NULL THEN
        RETURN QUERY SELECT c.id FROM @extschema@.wa_channels c WHERE c.id = posting_channel AND c.waba_id IS NULL;
    END IF;
END
$$;

-- Applies a template event to one channel's copy of the template; each attribute only if the
-- event is not older than the one that set it. Returns what it did.
CREATE FUNCTION _wa_apply_template_event(ch bigint, at timestamptz, t jsonb) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_status   text := t ->> 'status';
    new_quality  text := t ->> 'quality_score';
    new_category text := t ->> 'category';
    changes_at   timestamptz := pg_catalog.to_timestamp((t ->> 'category_changes_at')::double precision);
    stale        boolean := COALESCE((t ->> 'components_changed')::boolean, false);
BEGIN
    UPDATE @extschema@.wa_templates x
       SET status = CASE WHEN new_status IS NOT NULL AND (x.status_at IS NULL OR x.status_at <= at) THEN new_status ELSE x.status END,
           reason = CASE WHEN new_status IS NOT NULL AND (x.status_at IS NULL OR x.status_at <= at) THEN t ->> 'reason' ELSE x.reason END,
           status_at = CASE WHEN new_status IS NOT NULL AND (x.status_at IS NULL OR x.status_at <= at) THEN at ELSE x.status_at END,
           quality_score = CASE WHEN new_quality IS NOT NULL AND (x.quality_at IS NULL OR x.quality_at <= at) THEN new_quality ELSE x.quality_score END,
           quality_at = CASE WHEN new_quality IS NOT NULL AND (x.quality_at IS NULL OR x.quality_at <= at) THEN at ELSE x.quality_at END,
           previous_category = CASE WHEN new_category IS NOT NULL AND (x.category_at IS NULL OR x.category_at <= at)
                                    THEN COALESCE(t ->> 'previous_category', NULLIF(x.category, new_category), x.previous_category)
                                    ELSE x.previous_category END,
           category = CASE WHEN new_category IS NOT NULL AND (x.category_at IS NULL OR x.category_at <= at) THEN new_category ELSE x.category END,
           category_changes_at = CASE WHEN new_category IS NOT NULL AND (x.category_at IS NULL OR x.category_at <= at)
                                      THEN COALESCE(changes_at, at) ELSE x.category_changes_at END,
           category_at = CASE WHEN new_category IS NOT NULL AND (x.category_at IS NULL OR x.category_at <= at) THEN at ELSE x.category_at END,
           needs_sync_since = CASE WHEN stale THEN COALESCE(x.needs_sync_since, at) ELSE x.needs_sync_since END,
           template_id = COALESCE(t ->> 'template_id', x.template_id),
           updated_at = pg_catalog.now()
     WHERE x.channel_id = ch AND x.name = t ->> 'name' AND x.language = t ->> 'language';
    IF FOUND THEN
        RETURN CASE WHEN stale THEN 'template marked for wa_sync_templates()' ELSE 'template updated' END;
    END IF;
    -- A template never synced: a status is enough to know it (as wa_sync_templates() would).
    IF new_status IS NOT NULL THEN
        INSERT INTO @extschema@.wa_templates (channel_id, name, language, status, template_id, reason, status_at)
        VALUES (ch, t ->> 'name', t ->> 'language', new_status, t ->> 'template_id', t ->> 'reason', at);
        RETURN 'template added';
    END IF;
    RETURN 'template not known to this channel: run wa_sync_templates() to read it';
END
$$;

-- Records one business event for each channel it is for (see _wa_channel_event_targets), acts
-- on it, and notifies wa_channel_event with the ids. What it acts on, only when no newer event
-- of the same kind is recorded for the channel (an older one delivered late changes nothing):
-- a lower send rate cap lowers wa_channels.max_messages_per_second (an operator raises it
-- again); stops_sending pauses the queue with Meta's words as the reason (wa_resume_channel()
-- resumes it); a template event updates wa_templates. Returns how many channels it was for.
CREATE FUNCTION _wa_receive_channel_event(posting_channel bigint, p_phone_number_id text, business_account text,
                                          p_display_phone_number text, p_kind @extschema@.wa_channel_event_kind,
                                          p_field text, p_at double precision, p_summary text, p_facts jsonb,
                                          p_template jsonb, p_payload jsonb, p_webhook_event bigint) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at       timestamptz := COALESCE(pg_catalog.to_timestamp(p_at), pg_catalog.now());
    cap      integer := (p_facts ->> 'send_rate_cap')::integer;
    stops    boolean := COALESCE((p_facts ->> 'stops_sending')::boolean, false);
    ch       @extschema@.wa_channels;
    newest   boolean;
    action   text;
    event_id bigint;
    n        integer := 0;
BEGIN
    FOR ch IN
        SELECT c.* FROM @extschema@.wa_channels c
         WHERE c.id IN (SELECT @extschema@._wa_channel_event_targets(posting_channel, p_phone_number_id, business_account,
                                                                     p_display_phone_number))
         ORDER BY c.id FOR UPDATE
    LOOP
        n := n + 1;
        action := NULL;
        IF EXISTS (SELECT 1 FROM @extschema@.wa_channel_events e
                    WHERE e.channel_id = ch.id AND e.kind = p_kind AND e.event_at = at
                      AND pg_catalog.md5(e.payload::text) = pg_catalog.md5(p_payload::text)) THEN
            CONTINUE; -- a redelivery or a replay: recorded and acted on already
        END IF;
        newest := NOT EXISTS (SELECT 1 FROM @extschema@.wa_channel_events e
                               WHERE e.channel_id = ch.id AND e.kind = p_kind AND e.event_at > at);
        IF newest AND cap IS NOT NULL AND cap < ch.max_messages_per_second THEN
            UPDATE @extschema@.wa_channels c SET max_messages_per_second = cap WHERE c.id = ch.id;
            action := pg_catalog.format('send rate lowered from %s to %s messages/s; raise it when Meta allows more: '
                                        'UPDATE wa_channels SET max_messages_per_second = <n> WHERE name = %L',
                                        ch.max_messages_per_second, cap, ch.name);
        END IF;
        IF newest AND stops AND ch.paused_at IS NULL THEN
            UPDATE @extschema@.wa_channels c
               SET paused_at = pg_catalog.now(),
                   paused_reason = 'Meta: ' || p_summary || '. Sending resumes with wa_resume_channel(' || pg_catalog.quote_literal(ch.name)
                                   || ') once Meta lifts it (WhatsApp Manager -> Account quality).'
             WHERE c.id = ch.id;
            action := pg_catalog.concat_ws('; ', action, 'queue paused until wa_resume_channel()');
        END IF;
        IF p_template IS NOT NULL THEN
            action := pg_catalog.concat_ws('; ', action, @extschema@._wa_apply_template_event(ch.id, at, p_template));
        END IF;
        IF p_kind = 'unknown_field' THEN
            action := 'kept raw in webhook event ' || p_webhook_event || ' until it is replayed or its retention passes';
        END IF;
        INSERT INTO @extschema@.wa_channel_events (channel_id, kind, field, event_at, summary, facts, payload, action, webhook_event_id)
        VALUES (ch.id, p_kind, p_field, at, p_summary, p_facts, p_payload, action, p_webhook_event)
        RETURNING id INTO event_id;
        PERFORM pg_catalog.pg_notify('wa_channel_event', pg_catalog.json_build_object('id', event_id, 'channel_id', ch.id)::text);
    END LOOP;
    RETURN n;
END
$$;

-- Resumes a queue that Meta's restriction, ban or offboarding paused (wa_channel_events says
-- which), once Meta has lifted it; a token error's pause is resumed by wa_set_access_token().
CREATE FUNCTION wa_resume_channel(channel text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch_id bigint := @extschema@._wa_require_channel(channel, 'admin');
BEGIN
    -- (wa_channels_wake wakes the delivery worker for the resumed queue.)
    UPDATE @extschema@.wa_channels c SET paused_at = NULL, paused_reason = NULL WHERE c.id = ch_id;
END
$$;

-- Refuses a template whose state Meta's template webhooks changed so that sending it now would
-- fail or cost what the sender did not choose: paused (low quality: Meta resumes it after a
-- few hours), disabled, or recategorised with the change in effect (until wa_sync_templates()
-- reads it again, which acknowledges the new category and its price). Kept apart from the
-- other checks of wa_send_template so that each refusal is one small function.
CREATE FUNCTION _wa_check_template_state(channel text, p_name text, p_language text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.wa_templates;
BEGIN
    SELECT x.* INTO t FROM @extschema@.wa_templates x JOIN @extschema@.wa_channels c ON c.id = x.channel_id
     WHERE c.name = channel AND x.name = p_name AND x.language = p_language;
    IF NOT FOUND THEN
        RETURN; -- _wa_check_template says what is wrong with a template this channel does not know
    END IF;
    IF t.status IN ('PAUSED', 'DISABLED') THEN
        RAISE EXCEPTION 'template % (%) is % by Meta%', pg_catalog.quote_literal(p_name), p_language, t.status,
                        COALESCE(' since ' || t.status_at::text, '')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = COALESCE('Meta''s reason: ' || t.reason || '. ', '')
                      || CASE t.status WHEN 'PAUSED' THEN 'Meta pauses a template whose quality dropped and resumes it by itself (3 hours the first time, 6 the second); '
                                                          || 'a status webhook APPROVED lifts this refusal. Improve or replace the template in WhatsApp Manager.'
                         ELSE 'A disabled template cannot be sent again: create a new one in WhatsApp Manager and wa_sync_templates(' || pg_catalog.quote_literal(channel) || ').' END;
    END IF;
    IF t.previous_category IS NOT NULL AND t.previous_category IS DISTINCT FROM t.category AND t.category_changes_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'template % (%) was recategorised by Meta from % to % on %', pg_catalog.quote_literal(p_name), p_language,
                        t.previous_category, t.category, t.category_changes_at
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Meta now sends and charges it as ' || t.category || '. If that is acceptable, run wa_sync_templates('
                      || pg_catalog.quote_literal(channel) || ') and send again; otherwise edit the template in WhatsApp Manager.';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_       text := @extschema@.wa_normalize_recipient(recipient);
    request   jsonb;
    category  text;
    marketing boolean;
    auth_ttl  interval;
    msg_id    bigint;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    PERFORM @extschema@._wa_check_template_state(channel, name, language);
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    request := @extschema@._wa_template_request(to_, name, language, components);
    -- The template's category, as wa_sync_templates() and template webhooks left it (NULL when
    -- the channel's templates were never synced).
    SELECT pg_catalog.upper(t.category), c.marketing_messages, c.authentication_template_ttl INTO category, marketing, auth_ttl
      FROM @extschema@.wa_channels c
      LEFT JOIN @extschema@.wa_templates t ON t.channel_id = c.id AND t.name = wa_send_template.name AND t.language = wa_send_template.language
     WHERE c.name = channel;
    IF category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        PERFORM @extschema@._wa_refuse_marketing_opt_out(channel, to_, name);
    END IF;
    IF request ->> 'recipient_type' = 'group' AND category = 'AUTHENTICATION' THEN
        RAISE EXCEPTION 'template % (%) is an authentication template: Meta''s Groups API does not send those to groups', pg_catalog.quote_literal(name), language
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Send one-time codes to each person with wa_send_template(channel, ''<their number>'', ...).';
    END IF;
    -- A one-time code is worth nothing late: the channel's authentication_template_ttl applies.
    IF category = 'AUTHENTICATION' AND expires_at IS NULL THEN
        expires_at := pg_catalog.now() + auth_ttl;
    END IF;
    msg_id := @extschema@._wa_enqueue(channel, to_, 'template', name, request, idempotency_key, expires_at);
    -- A marketing template of a channel onboarded to the Marketing Messages API goes through it.
    IF marketing AND category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        UPDATE @extschema@.wa_messages m SET graph_endpoint = 'marketing_messages' WHERE m.id = msg_id;
    END IF;
    RETURN msg_id;
END
$$;

-- One row per channel, answering the seed's "Common issues": is Meta reaching us, with the
-- right secret and token, and is anything failing on the way out?
CREATE OR REPLACE VIEW wa_channel_health WITH (security_invoker = true) AS
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

-- The new and replaced functions: their planner settings and privileges, as a fresh install has them.
SELECT _wa_plan_hot_paths();
SELECT _wa_apply_privileges();
-- (end of issue 27, items 3-5)

-- (issue 28, items 2, 4 and 6: the action outbox, block and unblock, call actions and every
-- event of a call, template creation and deletion)

CREATE FUNCTION "_wa_wake_actions"() RETURNS void
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_wake_actions_wrapper';

CREATE FUNCTION "_wa_block_request"(
	"recipients" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_block_request_wrapper';

CREATE FUNCTION "_wa_call_action_request"(
	"call_id" TEXT, /* Option < & str > */
	"action" TEXT, /* Option < & str > */
	"sdp" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_call_action_request_wrapper';

CREATE FUNCTION "_wa_create_template_request"(
	"name" TEXT, /* Option < & str > */
	"language" TEXT, /* Option < & str > */
	"category" TEXT, /* Option < & str > */
	"components" jsonb /* Option < JsonB > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_create_template_request_wrapper';

-- When Meta confirmed that this business blocked the customer (wa_block(), through the
-- action outbox); NULL once unblocked. wa_send_* refuse a blocked customer at enqueue.
ALTER TABLE wa_contacts ADD COLUMN blocked_at timestamptz;

-- Every event of a call as Meta sent it (connect with its SDP offer, terminate, ...), in the
-- order received: wa_calls keeps the call's state, and only its latest event.
CREATE TABLE wa_call_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    call_id     text NOT NULL,
    -- Meta's event: connect, terminate, ...
    event       text NOT NULL,
    -- Meta's timestamp of the event, else when it was received.
    event_at    timestamptz NOT NULL,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX wa_call_events_call ON wa_call_events (channel_id, call_id, id);
-- Meta redelivers: the same event of a call is kept once.
CREATE UNIQUE INDEX wa_call_events_once ON wa_call_events (channel_id, call_id, event, event_at, pg_catalog.md5(payload::text));

-- The action outbox: Graph API calls that are not messages (block and unblock users, act on a
-- call, create and delete templates), queued in the caller's transaction by the SQL API
-- (sql/outbound_actions.sql) and performed by the delivery worker after COMMIT, retried as
-- messages are. The kinds are the Graph API endpoints; a new endpoint is a new label.
CREATE TYPE wa_action_kind AS ENUM ('block', 'unblock', 'call', 'create_template', 'delete_template');
-- What wa_call_action() can do to a call (Meta's `action`).
CREATE TYPE wa_call_action AS ENUM ('pre_accept', 'accept', 'reject', 'terminate');

CREATE TABLE wa_actions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL REFERENCES wa_channels (id) ON DELETE CASCADE,
    kind            wa_action_kind NOT NULL,
    -- What it acts on, to find it by: the call id, the template's name; NULL for a block
    -- (its users are in the request).
    target          text,
    -- The Graph API body (NULL for a template's deletion, which names it in the URL).
    request         jsonb,
    -- queued -> sending -> done, or failed (with the error); done with error_code set when Meta
    -- did some of it (a block some of whose users failed: see result).
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz DEFAULT pg_catalog.now(),
    -- Meta's answer (a block's added_users / removed_users and failed_users with their errors).
    result          jsonb,
    error_code      integer,
    error_title     text,
    error_details   text,
    error_hint      text,
    -- The role that queued it (the session's, not the functions' owner).
    created_by      name NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    done_at         timestamptz
);
-- The due actions, for the delivery worker's claim (few: actions are rare next to messages).
CREATE INDEX wa_actions_due ON wa_actions (next_attempt_at) WHERE status = 'queued';
CREATE INDEX wa_actions_channel ON wa_actions (channel_id, id);
-- What is not done yet per channel and target: an action waits for the older ones of its target.
CREATE INDEX wa_actions_pending ON wa_actions (channel_id, (COALESCE(target, ''))) WHERE status IN ('queued', 'sending');

SELECT pg_catalog.pg_extension_config_dump('wa_call_events'::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('wa_call_events', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump('wa_actions'::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('wa_actions', 'id')::regclass, '');

CREATE OR REPLACE FUNCTION _wa_channel_tables() RETURNS TABLE (table_name regclass, channel_column name)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT t.table_name::regclass, t.channel_column::name
      FROM (VALUES ('@extschema@.wa_channels', 'id'), ('@extschema@.wa_contacts', 'channel_id'),
                   ('@extschema@.wa_contact_former_ids', 'channel_id'), ('@extschema@.wa_calls', 'channel_id'),
                   ('@extschema@.wa_groups', 'channel_id'), ('@extschema@.wa_webhook_events', 'channel_id'),
                   ('@extschema@.wa_messages', 'channel_id'), ('@extschema@.wa_conversation_state', 'channel_id'),
                   ('@extschema@.wa_message_statuses', 'channel_id'), ('@extschema@.wa_channel_counters', 'channel_id'),
                   ('@extschema@.wa_templates', 'channel_id'), ('@extschema@.wa_media', 'channel_id'),
                   ('@extschema@.wa_channel_events', 'channel_id'), ('@extschema@.wa_call_events', 'channel_id'),
                   ('@extschema@.wa_actions', 'channel_id'))
           AS t (table_name, channel_column);
END;

-- Row-level security for the new tables, as CREATE EXTENSION makes it.
ALTER TABLE wa_call_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE wa_actions ENABLE ROW LEVEL SECURITY;
SELECT _wa_apply_policies();

-- A blocked customer is refused at enqueue.
CREATE OR REPLACE FUNCTION _wa_enqueue_target(channel text, recipient text, p_type text, to_group boolean)
RETURNS TABLE (channel_id bigint, contact_id bigint, group_id text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.id, k.id, g.group_id
      FROM @extschema@.wa_channels c
      LEFT JOIN LATERAL (SELECT k.id, k.last_inbound_at, k.blocked_at FROM @extschema@.wa_contacts k
                          WHERE NOT _wa_enqueue_target.to_group
                            AND k.channel_id = c.id
                            AND (k.wa_id = pg_catalog.ltrim(_wa_enqueue_target.recipient, '+')
                                 OR k.user_id = _wa_enqueue_target.recipient)
                          -- (two contacts match when a customer's phone and BSUID were seen apart)
                          ORDER BY k.last_inbound_at DESC NULLS LAST
                          LIMIT 1) k ON true
      LEFT JOIN LATERAL (SELECT g.group_id, g.last_inbound_at FROM @extschema@.wa_groups g
                          WHERE _wa_enqueue_target.to_group
                            AND g.channel_id = c.id AND g.group_id = _wa_enqueue_target.recipient
                            AND g.status = 'active') g ON true
     WHERE c.name = _wa_enqueue_target.channel AND c.enabled
       AND (NOT _wa_enqueue_target.to_group OR g.group_id IS NOT NULL)
       AND (k.blocked_at IS NULL OR _wa_enqueue_target.p_type = 'mark_read')
       AND (_wa_enqueue_target.p_type IN ('template', 'mark_read') OR c.allow_outside_window
            OR k.last_inbound_at >= pg_catalog.now() - interval '24 hours'
            OR g.last_inbound_at >= pg_catalog.now() - interval '24 hours');
END;

CREATE OR REPLACE FUNCTION _wa_enqueue(channel text, recipient text, p_type text, p_body text, request jsonb,
                            idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    msg_id   bigint;
    sends    boolean;
    to_group boolean := COALESCE(request ->> 'recipient_type' = 'group', false);
    ch       @extschema@.wa_channels;
    contact  @extschema@.wa_contacts;
    grp      @extschema@.wa_groups;
    last_in  timestamptz;
BEGIN
    IF expires_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'expires_at % is not in the future', expires_at
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the time after which the message is no longer worth sending, e.g. now() + interval ''10 minutes''.';
    END IF;
    IF idempotency_key IS NOT NULL THEN
        msg_id := @extschema@._wa_message_by_key(channel, idempotency_key);
        IF msg_id IS NOT NULL THEN
            RETURN msg_id;
        END IF;
        -- Callers with the same key wait here for each other: the second one sees the first's
        -- message once it commits (read committed), or queues its own if the first rolled
        -- back. (The unique index wa_messages_idempotency_key is what guarantees one row.)
        -- (A hash collision only makes two callers wait for each other.)
        PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(channel), pg_catalog.hashtext(idempotency_key));
        msg_id := @extschema@._wa_message_by_key(channel, idempotency_key);
        IF msg_id IS NOT NULL THEN
            RETURN msg_id;
        END IF;
    END IF;
    -- One statement on the way in (the channel, the customer's 24-hour window and the row);
    -- only when it inserts nothing are the rules checked one by one, to say which one refused.
    IF p_type = 'text' THEN
        -- Text, most of what an inbox sends, has one derived column (the message it replies
        -- to): the other twenty of _wa_message_columns() are NULL for it, and computing them
        -- cost a tenth of an enqueue (measured).
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload,
                                              next_attempt_at, idempotency_key, expires_at, reply_to_wamid, voice, forwarded, frequently_forwarded)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body, 'queued', recipient, request, pg_catalog.now(),
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, request -> 'context' ->> 'message_id', false, false, false
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group) t
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    ELSE
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload, next_attempt_at,
                                              idempotency_key, expires_at, media_id, media_mime_type, media_sha256, media_filename,
                                              voice, latitude, longitude, location_name, location_address,
                                              reply_to_wamid, forwarded, frequently_forwarded, referral,
                                              reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                              button_payload, order_items, shared_contacts, system_type,
                                              original_wamid)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body, 'queued', recipient, request, pg_catalog.now(),
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, d.*
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group) t
         CROSS JOIN LATERAL @extschema@._wa_message_columns(p_type, request) d
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    END IF;
    IF msg_id IS NOT NULL THEN
        -- A paused channel's queue waits for wa_set_access_token() (or any change to the
        -- channel, see wa_channels_wake): no need to wake the worker for it.
        IF sends THEN
            PERFORM @extschema@._wa_wake_delivery();
        END IF;
        RETURN msg_id;
    END IF;

    SELECT * INTO ch FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF NOT ch.enabled THEN
        RAISE EXCEPTION 'channel % is disabled', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Enable it with UPDATE wa_channels SET enabled = true WHERE name = %L.', channel);
    END IF;
    IF to_group THEN
        SELECT * INTO grp FROM @extschema@.wa_groups g WHERE g.channel_id = ch.id AND g.group_id = recipient;
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a group of channel %', recipient, pg_catalog.quote_literal(channel)
                USING ERRCODE = 'undefined_object',
                      HINT = 'A group is known from its webhooks (subscribe the app to group_lifecycle_update) or its first message; see SELECT group_id, subject FROM wa_groups. A phone number needs its country code.';
        END IF;
        IF grp.status <> 'active' THEN
            RAISE EXCEPTION 'group % of channel % is %', recipient, pg_catalog.quote_literal(channel), pg_catalog.replace(grp.status, '_', ' ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = CASE grp.status WHEN 'suspended' THEN 'Meta suspended it; messages can be sent again once it clears the suspension (group_suspend_cleared).'
                                             ELSE 'Only an active group can be sent to; see wa_groups.last_event for what Meta said.' END;
        END IF;
        last_in := grp.last_inbound_at;
    ELSE
        SELECT * INTO contact FROM @extschema@.wa_contacts k
         WHERE k.channel_id = ch.id AND (k.wa_id = pg_catalog.ltrim(recipient, '+') OR k.user_id = recipient)
         ORDER BY k.last_inbound_at DESC NULLS LAST
         LIMIT 1;
        IF contact.blocked_at IS NOT NULL AND p_type <> 'mark_read' THEN
            RAISE EXCEPTION '% is blocked on channel % (since %): Meta refuses messages to a blocked customer', recipient,
                pg_catalog.quote_literal(channel), contact.blocked_at
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = pg_catalog.format('Unblock them first: SELECT wa_unblock(%L, ARRAY[%L]).', channel, recipient);
        END IF;
        last_in := contact.last_inbound_at;
    END IF;
    IF p_type IN ('template', 'mark_read') OR ch.allow_outside_window
       OR last_in >= pg_catalog.now() - interval '24 hours' THEN
        -- The channel was enabled, the switch turned on or the customer wrote since the INSERT
        -- looked (a concurrent transaction): nothing refuses the message now, so the caller
        -- only needs to try again.
        RAISE EXCEPTION 'channel % changed while the message was being queued', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'serialization_failure', HINT = 'Try again.';
    END IF;
    RAISE EXCEPTION 'the 24-hour customer-service window with % is closed: %', CASE WHEN to_group THEN 'group ' ELSE '' END || recipient,
        CASE WHEN last_in IS NULL THEN CASE WHEN to_group THEN 'nobody has written in it' ELSE 'they have not written to channel ' || pg_catalog.quote_literal(channel) END
             ELSE 'the last message from ' || CASE WHEN to_group THEN 'a participant' ELSE 'them' END || ' was at ' || last_in::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Only an approved template can (re)open the conversation: use wa_send_template(). '
                  || 'To send anyway, UPDATE wa_channels SET allow_outside_window = true.';
END
$$;

-- Every call event kept in wa_call_events.
CREATE OR REPLACE FUNCTION _wa_receive_calls(channels bigint[], call_ids text[], froms text[], tos text[], events text[],
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

-- ---------------------------------------------------------------------------------------------
-- API

-- Queues one action of a channel the caller may act on (checked by the caller), and wakes the
-- delivery worker at COMMIT for actions.
CREATE FUNCTION _wa_enqueue_action(channel_id bigint, kind @extschema@.wa_action_kind, target text, request jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    action_id bigint;
BEGIN
    INSERT INTO @extschema@.wa_actions (channel_id, kind, target, request, created_by)
    VALUES (_wa_enqueue_action.channel_id, _wa_enqueue_action.kind, _wa_enqueue_action.target, _wa_enqueue_action.request,
            @extschema@._wa_caller())
    RETURNING id INTO action_id;
    PERFORM @extschema@._wa_wake_actions();
    RETURN action_id;
END
$$;

-- Blocks customers (Meta's Block Users API): they can no longer write to the business, nor the
-- business to them. Meta only blocks customers who wrote in the last 24 hours; its answer is
-- per customer, and wa_contacts.blocked_at is set for those it confirms.
CREATE FUNCTION wa_block(channel text, recipients text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'block', NULL, @extschema@._wa_block_request(
        ARRAY(SELECT @extschema@.wa_normalize_recipient(r) FROM unnest(recipients) r)));
END
$$;

-- Unblocks customers; wa_contacts.blocked_at is cleared for those Meta confirms.
CREATE FUNCTION wa_unblock(channel text, recipients text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'unblock', NULL, @extschema@._wa_block_request(
        ARRAY(SELECT @extschema@.wa_normalize_recipient(r) FROM unnest(recipients) r)));
END
$$;

-- Acts on a call of the channel (Meta's Calling API): pre_accept and accept with the SDP answer
-- to the offer of its connect event, reject, terminate. Actions on one call are performed in
-- the order they were queued.
CREATE FUNCTION wa_call_action(channel text, call_id text, action @extschema@.wa_call_action, sdp text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    IF NOT EXISTS (SELECT FROM @extschema@.wa_calls c WHERE c.channel_id = ch AND c.call_id = wa_call_action.call_id) THEN
        RAISE EXCEPTION '% is not a call of channel %', pg_catalog.quote_literal(call_id), pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object',
                  HINT = 'A call is known from its connect webhook (subscribe the app to the calls field); see SELECT call_id, status FROM wa_calls.';
    END IF;
    RETURN @extschema@._wa_enqueue_action(ch, 'call', call_id, @extschema@._wa_call_action_request(call_id, action::text, sdp));
END
$$;

-- Asks a customer for permission to call them: Meta's interactive call_permission_request, a
-- message (it has a wamid and statuses, and the customer's answer comes back as an inbound
-- interactive call_permission_reply), so it is queued as one, in the customer's order and
-- within their 24-hour window (outside it, use a template with a call permission button).
CREATE FUNCTION wa_request_call_permission(channel text, recipient text, body text DEFAULT NULL,
                                           idempotency_key text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', body, @extschema@._wa_interactive_request(to_,
        pg_catalog.jsonb_build_object('type', 'call_permission_request', 'action', pg_catalog.jsonb_build_object('name', 'call_permission_request'))
        || CASE WHEN body IS NOT NULL THEN pg_catalog.jsonb_build_object('body', pg_catalog.jsonb_build_object('text', body)) ELSE '{}' END),
        idempotency_key);
END
$$;

-- The business account a template action of the channel goes to, or an error that says where
-- to find it.
CREATE FUNCTION _wa_channel_waba(ch bigint) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    waba text;
    ch_name text;
BEGIN
    SELECT c.waba_id, c.name INTO waba, ch_name FROM @extschema@.wa_channels c WHERE c.id = ch;
    IF waba IS NULL THEN
        RAISE EXCEPTION 'channel % has no WhatsApp Business Account id', pg_catalog.quote_literal(ch_name)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Set it: UPDATE wa_channels SET waba_id = ''<id from Meta''''s WhatsApp Manager>'' WHERE name = %L.', ch_name);
    END IF;
    RETURN waba;
END
$$;

-- Submits a template for Meta's review. Once Meta answers, wa_templates has it as PENDING (with
-- Meta's id) until the status webhook says APPROVED or REJECTED.
CREATE FUNCTION wa_create_template(channel text, name text, language text, category text, components jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'admin');
BEGIN
    PERFORM @extschema@._wa_channel_waba(ch);
    RETURN @extschema@._wa_enqueue_action(ch, 'create_template', name,
                                          @extschema@._wa_create_template_request(name, language, category, components));
END
$$;

-- Deletes a template, every language of the name (Meta deletes by name). Once Meta confirms,
-- its rows leave wa_templates (a deleted template cannot be sent; its name cannot be reused for
-- 30 days, Meta's rule).
CREATE FUNCTION wa_delete_template(channel text, name text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'admin');
BEGIN
    PERFORM @extschema@._wa_channel_waba(ch);
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'no template name given' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the name of a template, e.g. SELECT DISTINCT name FROM wa_templates.';
    END IF;
    RETURN @extschema@._wa_enqueue_action(ch, 'delete_template', name, NULL);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Store procedures for the delivery worker

-- Claims up to `max_actions` due actions of channels that send, at most the oldest pending one
-- per channel and target (a call's pre_accept before its accept; a block before an unblock),
-- committed as 'sending' by the caller's transaction.
CREATE FUNCTION _wa_claim_actions(max_actions integer, default_version text)
RETURNS TABLE (id bigint, channel_id bigint, kind text, target text, request text, attempts integer,
               phone_number_id text, waba_id text, graph_api_version text, access_token text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE @extschema@.wa_actions a
       SET status = 'sending', attempts = a.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE a.id IN (SELECT d.id FROM @extschema@.wa_actions d
                      JOIN @extschema@.wa_channels dc ON dc.id = d.channel_id
                     WHERE d.status = 'queued' AND d.next_attempt_at <= pg_catalog.now()
                       AND dc.enabled AND dc.paused_at IS NULL
                       AND NOT EXISTS (SELECT FROM @extschema@.wa_actions p
                                        WHERE p.channel_id = d.channel_id AND p.status IN ('queued', 'sending')
                                          AND COALESCE(p.target, '') = COALESCE(d.target, '') AND p.id < d.id)
                     ORDER BY d.next_attempt_at
                     LIMIT max_actions)
       AND a.status || '' = 'queued' AND c.id = a.channel_id AND s.channel_id = c.id
    RETURNING a.id, a.channel_id, a.kind::text, a.target, a.request::text, a.attempts, c.phone_number_id, c.waba_id,
              COALESCE(c.graph_api_version, default_version), s.access_token
$$;

-- Seconds until the next queued action of a channel that sends falls due (negative: overdue,
-- the worker counts it as now); NULL when none is. (Not greatest(0, ...): greatest() ignores a
-- NULL, so "none queued" became 0, due now, and the worker read wa_actions at every turn: 0.8 ms
-- of its main thread per turn, measured at 200 commits/s.)
CREATE FUNCTION _wa_next_action_due_in() RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT extract(epoch FROM pg_catalog.min(a.next_attempt_at) - pg_catalog.now())::double precision
      FROM @extschema@.wa_actions a JOIN @extschema@.wa_channels c ON c.id = a.channel_id
     WHERE a.status = 'queued' AND c.enabled AND c.paused_at IS NULL
$$;

-- After a crash (or a shutdown) between claiming and recording, claimed actions are due again
-- at once: Meta echoes nothing of an action that could tell it was done (README, "Actions").
CREATE FUNCTION _wa_requeue_interrupted_actions() RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        UPDATE @extschema@.wa_actions a SET status = 'queued', next_attempt_at = pg_catalog.now(), updated_at = pg_catalog.now()
         WHERE a.status = 'sending' RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM r
$$;

-- Notifies wa_action that an action ended.
CREATE FUNCTION _wa_notify_action(a @extschema@.wa_actions) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT pg_catalog.pg_notify('wa_action', pg_catalog.json_build_object('id', a.id, 'channel_id', a.channel_id)::text);
END;

-- Records an action Meta did (`result`: its answer; for a block with some users failed, the
-- summary error too), and what it changes here: blocked_at of the customers Meta blocked or
-- unblocked, the template created (PENDING) or deleted.
CREATE FUNCTION _wa_action_done(action_id bigint, result jsonb, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a @extschema@.wa_actions;
    u jsonb;
BEGIN
    UPDATE @extschema@.wa_actions x
       SET status = 'done', result = _wa_action_done.result, next_attempt_at = NULL, done_at = pg_catalog.now(),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = action_id AND x.status || '' = 'sending'
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF a.kind IN ('block', 'unblock') THEN
        FOR u IN SELECT * FROM pg_catalog.jsonb_array_elements(
                    COALESCE(result -> CASE a.kind WHEN 'block' THEN 'added_users' ELSE 'removed_users' END, '[]')) LOOP
            IF a.kind = 'block' AND u ->> 'wa_id' IS NOT NULL THEN
                -- (a customer not known yet becomes a contact, so that the block is kept)
                INSERT INTO @extschema@.wa_contacts AS k (channel_id, wa_id, blocked_at) VALUES (a.channel_id, u ->> 'wa_id', pg_catalog.now())
                ON CONFLICT (channel_id, wa_id) WHERE wa_id IS NOT NULL DO UPDATE SET blocked_at = pg_catalog.now(), updated_at = pg_catalog.now();
            END IF;
            UPDATE @extschema@.wa_contacts k
               SET blocked_at = CASE a.kind WHEN 'block' THEN pg_catalog.now() END, updated_at = pg_catalog.now()
             WHERE k.channel_id = a.channel_id
               AND (k.wa_id = COALESCE(u ->> 'wa_id', pg_catalog.ltrim(u ->> 'input', '+')) OR k.user_id = u ->> 'input')
               AND (k.blocked_at IS NULL) = (a.kind = 'block');
        END LOOP;
    ELSIF a.kind = 'create_template' THEN
        INSERT INTO @extschema@.wa_templates AS t (channel_id, name, language, status, category, components, template_id)
        VALUES (a.channel_id, a.target, a.request ->> 'language', COALESCE(result ->> 'status', 'PENDING'),
                COALESCE(result ->> 'category', a.request ->> 'category'), a.request -> 'components', result ->> 'id')
        ON CONFLICT (channel_id, name, language) DO UPDATE
           SET status = excluded.status, category = excluded.category, components = excluded.components,
               template_id = excluded.template_id, reason = NULL, status_at = NULL, updated_at = pg_catalog.now()
         -- (a status webhook about this very template that came first is newer: kept)
         WHERE t.template_id IS DISTINCT FROM excluded.template_id OR t.status_at IS NULL;
    ELSIF a.kind = 'delete_template' THEN
        DELETE FROM @extschema@.wa_templates t WHERE t.channel_id = a.channel_id AND t.name = a.target;
    END IF;
    PERFORM @extschema@._wa_notify_action(a);
END
$$;

-- Records an action Meta refused for good, or given up on, with the reason and a hint.
CREATE FUNCTION _wa_action_failed(action_id bigint, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a @extschema@.wa_actions;
BEGIN
    UPDATE @extschema@.wa_actions x
       SET status = 'failed', next_attempt_at = NULL, done_at = pg_catalog.now(),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = action_id AND x.status || '' = 'sending'
    RETURNING * INTO a;
    IF FOUND THEN
        PERFORM @extschema@._wa_notify_action(a);
    END IF;
END
$$;

-- Puts an action back in the queue for its next attempt, after `delay_seconds`.
CREATE FUNCTION _wa_action_retry(action_id bigint, delay_seconds double precision, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.wa_actions x
       SET status = 'queued', next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => delay_seconds),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = action_id AND x.status || '' = 'sending';
END
$$;

-- The new and replaced functions: their planner settings and privileges, as a fresh install has them.
SELECT _wa_plan_hot_paths();
SELECT _wa_apply_privileges();
-- (end of issue 28, items 2, 4 and 6)

-- (issue 28, items 1 and 3: reply_to on every kind Meta allows it on, wa_send_contacts, send_at,
-- wa_cancel_message, wa_retry_message)
-- Scheduled and cancelled messages: two statuses, and the index the delivery worker releases
-- scheduled messages by.
ALTER TABLE wa_messages DROP CONSTRAINT wa_messages_status_check,
    ADD CONSTRAINT wa_messages_status_check CHECK (status IN ('received', 'scheduled', 'queued', 'sending', 'sent', 'delivered', 'read', 'played',
                                                             'failed', 'cancelled'));
CREATE INDEX wa_messages_scheduled ON wa_messages (next_attempt_at) WHERE status = 'scheduled';
CREATE OR REPLACE FUNCTION _wa_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE status
    WHEN 'scheduled' THEN 0 WHEN 'queued' THEN 0 WHEN 'sending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
    WHEN 'read' THEN 3 WHEN 'played' THEN 4 WHEN 'failed' THEN 100 WHEN 'cancelled' THEN 100 ELSE -1 END;

-- The request builders and send functions gain reply_to, the send functions send_at: new signatures.
DROP FUNCTION wa_send_text(text, text, text, text, boolean, text, timestamptz);
DROP FUNCTION wa_send_media(text, text, text, text, text, text, text, timestamptz);
DROP FUNCTION wa_send_template(text, text, text, text, jsonb, text, timestamptz);
DROP FUNCTION wa_send_interactive(text, text, jsonb, text, timestamptz);
DROP FUNCTION wa_send_location(text, text, double precision, double precision, text, text, text, timestamptz);
DROP FUNCTION wa_send_reaction(text, text, text, text, timestamptz);
DROP FUNCTION _wa_enqueue(text, text, text, text, jsonb, text, timestamptz);
DROP FUNCTION _wa_enqueue_target(text, text, text, boolean);
DROP FUNCTION _wa_media_request(text, text, text, text, text);
DROP FUNCTION _wa_template_request(text, text, text, jsonb);
DROP FUNCTION _wa_interactive_request(text, jsonb);
DROP FUNCTION _wa_location_request(text, double precision, double precision, text, text);

CREATE  FUNCTION "_wa_media_request"(
	"recipient" TEXT, /* Option < & str > */
	"kind" TEXT, /* Option < & str > */
	"link_or_media_id" TEXT, /* Option < & str > */
	"caption" TEXT, /* Option < & str > */
	"filename" TEXT, /* Option < & str > */
	"reply_to" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_media_request_with_context_wrapper';

CREATE  FUNCTION "_wa_template_request"(
	"recipient" TEXT, /* Option < & str > */
	"name" TEXT, /* Option < & str > */
	"language" TEXT, /* Option < & str > */
	"components" jsonb, /* Option < JsonB > */
	"reply_to" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_template_request_with_context_wrapper';

CREATE  FUNCTION "_wa_interactive_request"(
	"recipient" TEXT, /* Option < & str > */
	"interactive" jsonb, /* Option < JsonB > */
	"reply_to" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_interactive_request_with_context_wrapper';

CREATE  FUNCTION "_wa_location_request"(
	"recipient" TEXT, /* Option < & str > */
	"latitude" double precision, /* Option < f64 > */
	"longitude" double precision, /* Option < f64 > */
	"name" TEXT, /* Option < & str > */
	"address" TEXT, /* Option < & str > */
	"reply_to" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_location_request_with_context_wrapper';

CREATE  FUNCTION "_wa_contacts_request"(
	"recipient" TEXT, /* Option < & str > */
	"contacts" jsonb, /* Option < JsonB > */
	"reply_to" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_contacts_request_wrapper';

-- The channel a message may be queued on, and the customer or group it goes to: no row when
-- the channel is unknown or disabled, when a group is not an active group of the channel, or
-- when the customer's (or the group's) 24-hour window is closed to this type of message (Meta
-- accepts free-form messages only within 24 hours of the customer's last message; outside it
-- they fail later with 131047: refused here, where the caller can act), or when the customer is
-- blocked (wa_block(): Meta would refuse the send). The window is judged at `at`, when the
-- message is to go out (now, or its send_at). The planner inlines it into _wa_enqueue's
-- INSERTs; for a 1:1 message the group's lookup is a one-time `false`.
CREATE FUNCTION _wa_enqueue_target(channel text, recipient text, p_type text, to_group boolean, at timestamptz)
RETURNS TABLE (channel_id bigint, contact_id bigint, group_id text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.id, k.id, g.group_id
      FROM @extschema@.wa_channels c
      LEFT JOIN LATERAL (SELECT k.id, k.last_inbound_at, k.blocked_at FROM @extschema@.wa_contacts k
                          WHERE NOT _wa_enqueue_target.to_group
                            AND k.channel_id = c.id
                            AND (k.wa_id = pg_catalog.ltrim(_wa_enqueue_target.recipient, '+')
                                 OR k.user_id = _wa_enqueue_target.recipient)
                          -- (two contacts match when a customer's phone and BSUID were seen apart)
                          ORDER BY k.last_inbound_at DESC NULLS LAST
                          LIMIT 1) k ON true
      LEFT JOIN LATERAL (SELECT g.group_id, g.last_inbound_at FROM @extschema@.wa_groups g
                          WHERE _wa_enqueue_target.to_group
                            AND g.channel_id = c.id AND g.group_id = _wa_enqueue_target.recipient
                            AND g.status = 'active') g ON true
     WHERE c.name = _wa_enqueue_target.channel AND c.enabled
       AND (NOT _wa_enqueue_target.to_group OR g.group_id IS NOT NULL)
       AND (k.blocked_at IS NULL OR _wa_enqueue_target.p_type = 'mark_read')
       AND (_wa_enqueue_target.p_type IN ('template', 'mark_read') OR c.allow_outside_window
            OR k.last_inbound_at >= _wa_enqueue_target.at - interval '24 hours'
            OR g.last_inbound_at >= _wa_enqueue_target.at - interval '24 hours');
END;

-- Queues one outbound message after the checks every kind shares, in the caller's
-- transaction, and wakes the delivery worker at commit. `recipient` is already normalised
-- ('+E.164', a BSUID or a group id); `request` is the Graph API body (recipient_type "group"
-- for a group). With an `idempotency_key` the channel already has a message for, that
-- message's id is returned and nothing is queued. Past `expires_at` a message still queued
-- fails as expired instead of being sent late. With a future `send_at` the message is
-- 'scheduled': it waits outside the queue (it holds up none of the customer's other messages)
-- until the delivery worker releases it at that time (_wa_release_scheduled); its 24-hour
-- window is judged at send_at, here and again then. A NULL or past send_at queues it now.
CREATE FUNCTION _wa_enqueue(channel text, recipient text, p_type text, p_body text, request jsonb,
                            idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                            send_at timestamptz DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    msg_id   bigint;
    sends    boolean;
    to_group boolean := COALESCE(request ->> 'recipient_type' = 'group', false);
    ch       @extschema@.wa_channels;
    contact  @extschema@.wa_contacts;
    grp      @extschema@.wa_groups;
    last_in  timestamptz;
    -- When it goes out: now, or its send_at (greatest() ignores a NULL).
    due      timestamptz := greatest(pg_catalog.now(), send_at);
BEGIN
    IF expires_at <= due THEN
        RAISE EXCEPTION 'expires_at % is not %', expires_at, CASE WHEN due > pg_catalog.now() THEN 'after send_at ' || due::text ELSE 'in the future' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the time after which the message is no longer worth sending, e.g. now() + interval ''10 minutes''.';
    END IF;
    IF idempotency_key IS NOT NULL THEN
        msg_id := @extschema@._wa_message_by_key(channel, idempotency_key);
        IF msg_id IS NOT NULL THEN
            RETURN msg_id;
        END IF;
        -- Callers with the same key wait here for each other: the second one sees the first's
        -- message once it commits (read committed), or queues its own if the first rolled
        -- back. (The unique index wa_messages_idempotency_key is what guarantees one row.)
        -- (A hash collision only makes two callers wait for each other.)
        PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(channel), pg_catalog.hashtext(idempotency_key));
        msg_id := @extschema@._wa_message_by_key(channel, idempotency_key);
        IF msg_id IS NOT NULL THEN
            RETURN msg_id;
        END IF;
    END IF;
    -- One statement on the way in (the channel, the customer's 24-hour window and the row);
    -- only when it inserts nothing are the rules checked one by one, to say which one refused.
    IF p_type = 'text' THEN
        -- Text, most of what an inbox sends, has one derived column (the message it replies
        -- to): the other twenty of _wa_message_columns() are NULL for it, and computing them
        -- cost a tenth of an enqueue (measured).
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload,
                                              next_attempt_at, idempotency_key, expires_at, reply_to_wamid, voice, forwarded, frequently_forwarded)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body,
               CASE WHEN due > pg_catalog.now() THEN 'scheduled' ELSE 'queued' END, recipient, request, due,
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, request -> 'context' ->> 'message_id', false, false, false
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group, due) t
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    ELSE
        INSERT INTO @extschema@.wa_messages AS m (channel_id, contact_id, group_id, direction, source, type, body, status, recipient, payload, next_attempt_at,
                                              idempotency_key, expires_at, media_id, media_mime_type, media_sha256, media_filename,
                                              voice, latitude, longitude, location_name, location_address,
                                              reply_to_wamid, forwarded, frequently_forwarded, referral,
                                              reaction_to_wamid, reaction_emoji, interactive_reply_id,
                                              button_payload, order_items, shared_contacts, system_type,
                                              original_wamid)
        SELECT t.channel_id, t.contact_id, t.group_id, 'outbound', 'api', p_type, p_body,
               CASE WHEN due > pg_catalog.now() THEN 'scheduled' ELSE 'queued' END, recipient, request, due,
               _wa_enqueue.idempotency_key, _wa_enqueue.expires_at, d.*
          FROM @extschema@._wa_enqueue_target(channel, recipient, p_type, to_group, due) t
         CROSS JOIN LATERAL @extschema@._wa_message_columns(p_type, request) d
        RETURNING m.id, (SELECT c.paused_at IS NULL FROM @extschema@.wa_channels c WHERE c.id = m.channel_id)
             INTO msg_id, sends;
    END IF;
    IF msg_id IS NOT NULL THEN
        -- A paused channel's queue waits for wa_set_access_token() (or any change to the
        -- channel, see wa_channels_wake): no need to wake the worker for it. (A scheduled
        -- message wakes it too: it may fall due before what the worker sleeps until.)
        IF sends THEN
            PERFORM @extschema@._wa_wake_delivery();
        END IF;
        RETURN msg_id;
    END IF;

    SELECT * INTO ch FROM @extschema@.wa_channels c WHERE c.name = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF NOT ch.enabled THEN
        RAISE EXCEPTION 'channel % is disabled', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Enable it with UPDATE wa_channels SET enabled = true WHERE name = %L.', channel);
    END IF;
    IF to_group THEN
        SELECT * INTO grp FROM @extschema@.wa_groups g WHERE g.channel_id = ch.id AND g.group_id = recipient;
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a group of channel %', recipient, pg_catalog.quote_literal(channel)
                USING ERRCODE = 'undefined_object',
                      HINT = 'A group is known from its webhooks (subscribe the app to group_lifecycle_update) or its first message; see SELECT group_id, subject FROM wa_groups. A phone number needs its country code.';
        END IF;
        IF grp.status <> 'active' THEN
            RAISE EXCEPTION 'group % of channel % is %', recipient, pg_catalog.quote_literal(channel), pg_catalog.replace(grp.status, '_', ' ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = CASE grp.status WHEN 'suspended' THEN 'Meta suspended it; messages can be sent again once it clears the suspension (group_suspend_cleared).'
                                             ELSE 'Only an active group can be sent to; see wa_groups.last_event for what Meta said.' END;
        END IF;
        last_in := grp.last_inbound_at;
    ELSE
        SELECT * INTO contact FROM @extschema@.wa_contacts k
         WHERE k.channel_id = ch.id AND (k.wa_id = pg_catalog.ltrim(recipient, '+') OR k.user_id = recipient)
         ORDER BY k.last_inbound_at DESC NULLS LAST
         LIMIT 1;
        IF contact.blocked_at IS NOT NULL AND p_type <> 'mark_read' THEN
            RAISE EXCEPTION '% is blocked on channel % (since %): Meta refuses messages to a blocked customer', recipient,
                pg_catalog.quote_literal(channel), contact.blocked_at
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = pg_catalog.format('Unblock them first: SELECT wa_unblock(%L, ARRAY[%L]).', channel, recipient);
        END IF;
        last_in := contact.last_inbound_at;
    END IF;
    IF p_type IN ('template', 'mark_read') OR ch.allow_outside_window
       OR last_in >= due - interval '24 hours' THEN
        -- The channel was enabled, the switch turned on or the customer wrote since the INSERT
        -- looked (a concurrent transaction): nothing refuses the message now, so the caller
        -- only needs to try again.
        RAISE EXCEPTION 'channel % changed while the message was being queued', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'serialization_failure', HINT = 'Try again.';
    END IF;
    RAISE EXCEPTION 'the 24-hour customer-service window with % %: %', CASE WHEN to_group THEN 'group ' ELSE '' END || recipient,
        CASE WHEN due > pg_catalog.now() THEN 'will be closed at send_at ' || due::text ELSE 'is closed' END,
        CASE WHEN last_in IS NULL THEN CASE WHEN to_group THEN 'nobody has written in it' ELSE 'they have not written to channel ' || pg_catalog.quote_literal(channel) END
             ELSE 'the last message from ' || CASE WHEN to_group THEN 'a participant' ELSE 'them' END || ' was at ' || last_in::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Only an approved template can (re)open the conversation: use wa_send_template(). '
                  || 'To send anyway, UPDATE wa_channels SET allow_outside_window = true.';
END
$$;

-- The send functions are PL/pgSQL rather than SQL: Postgres 15 plans the body of a SQL function
-- that cannot be inlined on every call (a third of the cost of an enqueue, measured), while
-- PL/pgSQL keeps its plans for the session.
-- Every wa_send_* but wa_send_reaction takes `reply_to` (the wamid of the message it quotes: Meta's
-- context, on every kind but reactions) and every one `send_at` (see _wa_enqueue), as their last
-- parameters, so that calls by position written for earlier versions keep their meaning.
CREATE FUNCTION wa_send_text(channel text, recipient text, body text, reply_to text DEFAULT NULL, preview_url boolean DEFAULT false,
                             idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'text', body, @extschema@._wa_text_request(to_, body, reply_to, preview_url),
                                   idempotency_key, expires_at, send_at);
END
$$;

CREATE FUNCTION wa_send_media(channel text, recipient text, kind text, link_or_media_id text,
                              caption text DEFAULT NULL, filename text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                              expires_at timestamptz DEFAULT NULL, reply_to text DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, kind, caption,
                                   @extschema@._wa_media_request(to_, kind, link_or_media_id, caption, filename, reply_to), idempotency_key,
                                   expires_at, send_at);
END
$$;

CREATE FUNCTION wa_send_template(channel text, recipient text, name text, language text, components jsonb DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL, reply_to text DEFAULT NULL,
                                 send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_       text := @extschema@.wa_normalize_recipient(recipient);
    request   jsonb;
    category  text;
    marketing boolean;
    auth_ttl  interval;
    msg_id    bigint;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    PERFORM @extschema@._wa_check_template_state(channel, name, language);
    PERFORM @extschema@._wa_check_template(channel, name, language, components);
    request := @extschema@._wa_template_request(to_, name, language, components, reply_to);
    -- The template's category, as wa_sync_templates() and template webhooks left it (NULL when
    -- the channel's templates were never synced).
    SELECT pg_catalog.upper(t.category), c.marketing_messages, c.authentication_template_ttl INTO category, marketing, auth_ttl
      FROM @extschema@.wa_channels c
      LEFT JOIN @extschema@.wa_templates t ON t.channel_id = c.id AND t.name = wa_send_template.name AND t.language = wa_send_template.language
     WHERE c.name = channel;
    IF category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        PERFORM @extschema@._wa_refuse_marketing_opt_out(channel, to_, name);
    END IF;
    IF request ->> 'recipient_type' = 'group' AND category = 'AUTHENTICATION' THEN
        RAISE EXCEPTION 'template % (%) is an authentication template: Meta''s Groups API does not send those to groups', pg_catalog.quote_literal(name), language
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Send one-time codes to each person with wa_send_template(channel, ''<their number>'', ...).';
    END IF;
    -- A one-time code is worth nothing late: the channel's authentication_template_ttl applies
    -- (from its send_at when it is scheduled).
    IF category = 'AUTHENTICATION' AND expires_at IS NULL THEN
        expires_at := greatest(pg_catalog.now(), send_at) + auth_ttl;
    END IF;
    msg_id := @extschema@._wa_enqueue(channel, to_, 'template', name, request, idempotency_key, expires_at, send_at);
    -- A marketing template of a channel onboarded to the Marketing Messages API goes through it.
    IF marketing AND category = 'MARKETING' AND request ->> 'recipient_type' <> 'group' THEN
        UPDATE @extschema@.wa_messages m SET graph_endpoint = 'marketing_messages' WHERE m.id = msg_id;
    END IF;
    RETURN msg_id;
END
$$;

CREATE FUNCTION wa_send_interactive(channel text, recipient text, interactive jsonb, idempotency_key text DEFAULT NULL,
                                    expires_at timestamptz DEFAULT NULL, reply_to text DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', interactive #>> '{body,text}',
                                   @extschema@._wa_interactive_request(to_, interactive, reply_to), idempotency_key, expires_at, send_at);
END
$$;

CREATE FUNCTION wa_send_location(channel text, recipient text, latitude double precision, longitude double precision,
                                 name text DEFAULT NULL, address text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL, reply_to text DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'location', name,
                                   @extschema@._wa_location_request(to_, latitude, longitude, name, address, reply_to), idempotency_key,
                                   expires_at, send_at);
END
$$;

-- Contact cards (Meta's contact objects, checked by whatsapp_cloud::graph_api::contacts); the
-- message's body is their formatted names, for the conversation's preview.
CREATE FUNCTION wa_send_contacts(channel text, recipient text, contacts jsonb, reply_to text DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                                 send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_     text := @extschema@.wa_normalize_recipient(recipient);
    request jsonb;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    request := @extschema@._wa_contacts_request(to_, contacts, reply_to);
    RETURN @extschema@._wa_enqueue(channel, to_, 'contacts',
                                   (SELECT pg_catalog.string_agg(c #>> '{name,formatted_name}', ', ') FROM pg_catalog.jsonb_array_elements(contacts) c),
                                   request, idempotency_key, expires_at, send_at);
END
$$;

-- Reacts to a message with an emoji; an empty emoji removes the reaction.
CREATE FUNCTION wa_send_reaction(channel text, message_wamid text, emoji text, idempotency_key text DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text;
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    to_ := @extschema@._wa_counterpart(channel, message_wamid);
    RETURN @extschema@._wa_enqueue(channel, to_, 'reaction', emoji, @extschema@._wa_reaction_request(to_, message_wamid, emoji),
                                   idempotency_key, expires_at, send_at);
END
$$;

-- Whether a message of type `p_type` may go out at `at` to its customer (or group): the rule of
-- _wa_enqueue_target (which keeps its own copy, inlined into the enqueue), for a message that
-- waited: a scheduled one when it falls due, a failed one when it is retried.
CREATE FUNCTION _wa_window_open(channel bigint, contact bigint, grp text, p_type text, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT _wa_window_open.p_type IN ('template', 'mark_read') OR c.allow_outside_window
           OR COALESCE((SELECT k.last_inbound_at FROM @extschema@.wa_contacts k WHERE k.id = _wa_window_open.contact)
                       >= _wa_window_open.at - interval '24 hours', false)
           OR COALESCE((SELECT g.last_inbound_at FROM @extschema@.wa_groups g
                         WHERE g.channel_id = c.id AND g.group_id = _wa_window_open.grp)
                       >= _wa_window_open.at - interval '24 hours', false)
      FROM @extschema@.wa_channels c WHERE c.id = _wa_window_open.channel;
END;

-- The outbound message `msg_id`, locked, if the caller may send on its channel. An id that does
-- not exist, an inbound message's and one of a channel the caller may not send on get the same
-- error, so that nobody learns which ids other tenants' messages have.
CREATE FUNCTION _wa_sendable_message(msg_id bigint) RETURNS @extschema@.wa_messages
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    channel text;
    m       @extschema@.wa_messages;
BEGIN
    SELECT c.name INTO channel
      FROM @extschema@.wa_messages x JOIN @extschema@.wa_channels c ON c.id = x.channel_id
     WHERE x.id = msg_id AND x.direction = 'outbound';
    IF channel IS NOT NULL THEN
        BEGIN
            PERFORM @extschema@._wa_require_channel(channel, 'send');
        EXCEPTION WHEN insufficient_privilege THEN
            channel := NULL;
        END;
    END IF;
    IF channel IS NULL THEN
        RAISE EXCEPTION 'no outbound message % on a channel you may send on', COALESCE(msg_id::text, 'NULL')
            USING ERRCODE = 'no_data_found',
                  HINT = 'Pass the id a wa_send_* function returned (wa_messages.id) for a channel you have the send privilege on.';
    END IF;
    SELECT * INTO m FROM @extschema@.wa_messages x WHERE x.id = msg_id FOR UPDATE;
    RETURN m;
END
$$;

-- Cancels a message that has not gone out yet (queued or scheduled): it will not be sent. One in
-- flight, already sent or failed cannot be cancelled (WhatsApp cannot unsend it; a sent
-- message can only be answered). Notified on wa_status.
CREATE FUNCTION wa_cancel_message(id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages := @extschema@._wa_sendable_message(wa_cancel_message.id);
BEGIN
    IF m.status NOT IN ('queued', 'scheduled') THEN
        RAISE EXCEPTION 'message % cannot be cancelled: it %', m.id,
              CASE m.status WHEN 'sending' THEN 'is being sent to Meta now'
                            WHEN 'failed' THEN 'failed' || COALESCE(': ' || m.error_title, '')
                            WHEN 'cancelled' THEN 'was already cancelled at ' || m.updated_at::text
                            ELSE 'was already sent (' || m.status || ')' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE m.status WHEN 'sending' THEN 'Meta answers within seconds; a sent message can no longer be cancelled.'
                                       WHEN 'failed' THEN 'A failed message is not sent; wa_retry_message() would send it again.'
                                       WHEN 'cancelled' THEN 'Nothing to do: it will not be sent.'
                                       ELSE 'Only a queued or scheduled message can be cancelled.' END;
    END IF;
    UPDATE @extschema@.wa_messages x SET status = 'cancelled', next_attempt_at = NULL, updated_at = pg_catalog.now()
     WHERE x.id = m.id;
    -- The customer's later messages that waited behind this one (_wa_hold_behind) need not.
    IF m.status = 'queued' THEN
        UPDATE @extschema@.wa_messages x SET next_attempt_at = pg_catalog.now()
         WHERE x.channel_id = m.channel_id AND x.recipient = m.recipient AND x.status = 'queued'
           AND x.id > m.id AND x.attempts = 0 AND x.next_attempt_at > pg_catalog.now();
    END IF;
    PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', m.id, 'channel_id', m.channel_id)::text);
    PERFORM @extschema@._wa_wake_delivery();
END
$$;

-- Sends a failed message again, as a new delivery of the same message (same id, with the full
-- budget of automatic retries again): back in the queue at its place in the customer's order, which is its id: it
-- goes out before any of their messages queued after it that are still waiting (the queue head
-- is the oldest message not done, see _wa_queue_head, so nothing later is claimed, nor needs
-- holding with _wa_hold_behind, until it is done); what already went out, or is in flight,
-- stays before it (WhatsApp cannot unsend). The last attempt's wamid and times are cleared
-- (its statuses stay in wa_message_statuses); its error stays until the new attempt's outcome,
-- as for an automatic retry. Refused when it expired, its customer is blocked or its 24-hour
-- window is closed.
CREATE FUNCTION wa_retry_message(id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages := @extschema@._wa_sendable_message(wa_retry_message.id);
BEGIN
    IF m.status <> 'failed' THEN
        RAISE EXCEPTION 'message % cannot be retried: it is %, not failed', m.id, m.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE WHEN m.status IN ('queued', 'scheduled', 'sending') THEN 'It has not failed: the delivery worker sends it (and retries it) by itself.'
                              WHEN m.status = 'cancelled' THEN 'A cancelled message stays cancelled: send a new one.'
                              ELSE 'Only a failed message can be retried.' END;
    END IF;
    IF m.expires_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'message % cannot be retried: it expired at %', m.id, m.expires_at
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Its sender did not want it sent after that (expires_at): send a new message if it is still worth sending.';
    END IF;
    IF m.type <> 'mark_read' AND EXISTS (SELECT FROM @extschema@.wa_contacts k WHERE k.id = m.contact_id AND k.blocked_at IS NOT NULL) THEN
        RAISE EXCEPTION 'message % cannot be retried: % is blocked (wa_block)', m.id, m.recipient
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Meta refuses messages to a blocked customer: unblock them first with wa_unblock().';
    END IF;
    IF NOT @extschema@._wa_window_open(m.channel_id, m.contact_id, m.group_id, m.type, pg_catalog.now()) THEN
        RAISE EXCEPTION 'message % cannot be retried: the 24-hour customer-service window with % is closed', m.id, m.recipient
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only an approved template can (re)open the conversation: use wa_send_template(); retry once they write again.';
    END IF;
    UPDATE @extschema@.wa_messages x
       SET status = 'queued', attempts = 0, next_attempt_at = pg_catalog.now(), failed_at = NULL, wamid = NULL,
           sent_at = NULL, delivered_at = NULL, read_at = NULL, updated_at = pg_catalog.now()
     WHERE x.id = m.id;
    PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', m.id, 'channel_id', m.channel_id)::text);
    PERFORM @extschema@._wa_wake_delivery();
END
$$;

-- Scheduled messages (wa_send_*(..., send_at => ...)) whose time has come join the queue, at the
-- place of their id in their customer's order; one whose 24-hour window closed since it was
-- scheduled (Meta would refuse it with 131047), or whose customer was blocked since (wa_block),
-- fails instead, saying so. Each change is
-- notified on wa_status. Run by every claim (one probe of wa_messages_scheduled when none is due).
CREATE FUNCTION _wa_release_scheduled() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (PL/pgSQL, not SQL: it runs at every claim, and PL/pgSQL keeps its plan for the session.)
AS $$
DECLARE
    released integer;
BEGIN
    WITH due AS (
        SELECT m.id, @extschema@._wa_window_open(m.channel_id, m.contact_id, m.group_id, m.type, pg_catalog.now()) AS open,
               (SELECT k.blocked_at FROM @extschema@.wa_contacts k WHERE k.id = m.contact_id) AS blocked_at
          FROM @extschema@.wa_messages m
         WHERE m.status = 'scheduled' AND m.next_attempt_at <= pg_catalog.now()
         ORDER BY m.next_attempt_at
         LIMIT 1000
           FOR UPDATE SKIP LOCKED
    ), judged AS (
        SELECT due.id, due.open AND due.blocked_at IS NULL AS sends, due.blocked_at FROM due
    ), changed AS (
        UPDATE @extschema@.wa_messages x
           SET status = CASE WHEN d.sends THEN 'queued' ELSE 'failed' END,
               failed_at = CASE WHEN NOT d.sends THEN pg_catalog.now() END,
               next_attempt_at = CASE WHEN d.sends THEN x.next_attempt_at END,
               error_title = CASE WHEN d.blocked_at IS NOT NULL
                                  THEN x.recipient || ' was blocked (wa_block) at ' || d.blocked_at::text || ', before send_at: not sent'
                                  WHEN NOT d.sends
                                  THEN 'the 24-hour customer-service window with ' || x.recipient
                                       || ' was closed at send_at ' || x.next_attempt_at::text || ': not sent' END,
               error_hint = CASE WHEN d.blocked_at IS NOT NULL
                                 THEN 'Meta refuses messages to a blocked customer; after wa_unblock(), wa_retry_message() sends it.'
                                 WHEN NOT d.sends
                                 THEN 'Only an approved template can (re)open the conversation; wa_retry_message() sends it once they write again.' END,
               updated_at = pg_catalog.now()
          FROM judged d
         WHERE x.id = d.id
        RETURNING x.id, x.channel_id)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', r.id, 'channel_id', r.channel_id)::text))
      INTO released
      FROM (SELECT changed.id, changed.channel_id FROM changed ORDER BY changed.id) r;
END
$$;

-- (its call of _wa_interactive_request gains the reply_to argument)
-- Asks a customer for permission to call them: Meta's interactive call_permission_request, a
-- message (it has a wamid and statuses, and the customer's answer comes back as an inbound
-- interactive call_permission_reply), so it is queued as one, in the customer's order and
-- within their 24-hour window (outside it, use a template with a call permission button).
CREATE OR REPLACE FUNCTION wa_request_call_permission(channel text, recipient text, body text DEFAULT NULL,
                                           idempotency_key text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    to_ text := @extschema@.wa_normalize_recipient(recipient);
BEGIN
    PERFORM @extschema@._wa_require_channel(channel, 'send');
    RETURN @extschema@._wa_enqueue(channel, to_, 'interactive', body, @extschema@._wa_interactive_request(to_,
        pg_catalog.jsonb_build_object('type', 'call_permission_request', 'action', pg_catalog.jsonb_build_object('name', 'call_permission_request'))
        || CASE WHEN body IS NOT NULL THEN pg_catalog.jsonb_build_object('body', pg_catalog.jsonb_build_object('text', body)) ELSE '{}' END,
        NULL), idempotency_key);
END
$$;

CREATE OR REPLACE FUNCTION _wa_claim_due(max_messages integer, default_version text, budgets jsonb)
RETURNS TABLE (id bigint, channel_id bigint, max_per_second integer, attempts integer, phone_number_id text,
               graph_api_version text, access_token text, request text, recipient text, kind text, endpoint text,
               probe boolean, expired boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a queue read: see sql/plans.sql.)
AS $$
DECLARE
    chosen bigint[];
BEGIN
    -- Scheduled messages whose time has come join the queue first. Looked for with one probe
    -- of wa_messages_scheduled: the release itself (a locking read, an UPDATE and their
    -- notifications) at every claim was a fifth of a claim's time when none was due (measured).
    IF EXISTS (SELECT FROM @extschema@.wa_messages s WHERE s.status = 'scheduled' AND s.next_attempt_at <= pg_catalog.now()) THEN
        PERFORM @extschema@._wa_release_scheduled();
    END IF;
    -- Claims the messages due now, at most one per recipient (the oldest queued one, and none
    -- while one is in flight), so that messages to one customer go out in the order they were
    -- queued; and per channel at most its budget (the worker's token bucket, `budgets`:
    -- {"<channel id>": n}; a channel not in it may use its full per-second rate). Paused and
    -- disabled channels are not read at all, nor is an unreachable one (see
    -- wa_channels.unreachable_since) until its next probe, which is one message; a channel's
    -- queue is read in due order (wa_messages_due) only until its budget is found: a long
    -- queue costs nothing per claim.
    SELECT pg_catalog.array_agg(d.id) INTO chosen
      FROM (SELECT m.id
              FROM @extschema@.wa_channels c
             CROSS JOIN LATERAL (
                    SELECT m.id, m.next_attempt_at
                      FROM @extschema@._wa_queue_heads(c.id) m
                     WHERE m.next_attempt_at <= pg_catalog.now()
                     ORDER BY m.next_attempt_at
                     -- (The channel's own rate too: the worker's budget is from before a change
                     -- of it. least() skips the NULL budget of a channel the worker has not seen.)
                     LIMIT least(max_messages, c.max_messages_per_second, (budgets ->> c.id::text)::integer,
                                 CASE WHEN c.unreachable_since IS NOT NULL THEN 1 END)
                   ) m
             WHERE c.enabled AND c.paused_at IS NULL AND (c.next_probe_at IS NULL OR c.next_probe_at <= pg_catalog.now())
             ORDER BY m.next_attempt_at
             LIMIT max_messages) d;
    -- By primary key: the claim must not become a join the planner could get wrong. (The
    -- status is compared as `status || ''` so that the planner cannot prove the partial index
    -- wa_messages_due applies: on statistics that say the queue is empty it read that whole
    -- index for every claim instead, 8,000 entries for 145 messages, measured on a full table.)
    RETURN QUERY
    UPDATE @extschema@.wa_messages m
       SET status = 'sending', attempts = m.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE m.id = ANY (chosen) AND m.status || '' = 'queued' AND c.id = m.channel_id AND s.channel_id = c.id
    RETURNING m.id, m.channel_id, c.max_messages_per_second, m.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token, m.payload::text, m.recipient, m.type,
              m.graph_endpoint, c.unreachable_since IS NOT NULL, COALESCE(m.expires_at <= pg_catalog.now(), false);
END
$$;

-- Seconds until the next queued message that could be claimed falls due (the oldest message of
-- each recipient, not behind one in flight, of a channel that sends), the next scheduled one or
-- the next media download; NULL when there is none.
CREATE OR REPLACE FUNCTION _wa_next_due_in() RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (Planned as a queue read: see sql/plans.sql.)
AS $$
DECLARE
    due timestamptz;
BEGIN
    SELECT least(
        -- (an unreachable channel's queue is due at its next probe at the soonest)
        (SELECT pg_catalog.min(greatest(h.next_attempt_at, c.next_probe_at))
           FROM @extschema@.wa_channels c
          CROSS JOIN LATERAL (
                SELECT m.next_attempt_at FROM @extschema@._wa_queue_heads(c.id) m
                 ORDER BY m.next_attempt_at
                 LIMIT 1) h
          WHERE c.enabled AND c.paused_at IS NULL),
        -- media downloads waiting for a retry
        (SELECT pg_catalog.min(j.next_attempt_at) FROM @extschema@.wa_media j WHERE j.status = 'pending'),
        -- scheduled messages, released into the queue by the claim (wa_messages_scheduled)
        (SELECT pg_catalog.min(m.next_attempt_at) FROM @extschema@.wa_messages m WHERE m.status = 'scheduled'))
      INTO due;
    -- (greatest() ignores NULL: nothing due must stay NULL, not become 0.)
    RETURN CASE WHEN due IS NOT NULL THEN greatest(0, extract(epoch FROM due - pg_catalog.now()))::double precision END;
END
$$;

-- The new and replaced functions: their planner settings and privileges, as a fresh install has them.
SELECT _wa_plan_hot_paths();
SELECT _wa_apply_privileges();
-- (end of issue 28, items 1 and 3)

-- (issue 28, item 5: groups through the action outbox: create a group, get and reset its
-- invite link, list, approve and reject its join requests, remove participants)

ALTER TYPE wa_action_kind ADD VALUE 'create_group';
ALTER TYPE wa_action_kind ADD VALUE 'get_group_invite_link';
ALTER TYPE wa_action_kind ADD VALUE 'reset_group_invite_link';
ALTER TYPE wa_action_kind ADD VALUE 'list_group_join_requests';
ALTER TYPE wa_action_kind ADD VALUE 'approve_group_join_requests';
ALTER TYPE wa_action_kind ADD VALUE 'reject_group_join_requests';
ALTER TYPE wa_action_kind ADD VALUE 'remove_group_participants';

-- Meta's request id of the wa_create_group() that made a group, from its group_create webhook.
ALTER TABLE wa_groups ADD COLUMN create_request_id text;

-- The open requests to join a group that needs approval, as Meta last listed them.
CREATE TABLE wa_group_join_requests (
    channel_id      bigint NOT NULL,
    group_id        text NOT NULL,
    -- Meta's id: what approving and rejecting take.
    join_request_id text NOT NULL,
    -- Who asked to join.
    wa_id           text,
    -- Meta's creation_timestamp.
    requested_at    timestamptz,
    listed_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (channel_id, group_id, join_request_id),
    FOREIGN KEY (channel_id, group_id) REFERENCES wa_groups (channel_id, group_id) ON DELETE CASCADE
);
SELECT pg_catalog.pg_extension_config_dump('wa_group_join_requests'::regclass, '');
CREATE OR REPLACE FUNCTION _wa_channel_tables() RETURNS TABLE (table_name regclass, channel_column name)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT t.table_name::regclass, t.channel_column::name
      FROM (VALUES ('@extschema@.wa_channels', 'id'), ('@extschema@.wa_contacts', 'channel_id'),
                   ('@extschema@.wa_contact_former_ids', 'channel_id'), ('@extschema@.wa_calls', 'channel_id'),
                   ('@extschema@.wa_groups', 'channel_id'), ('@extschema@.wa_webhook_events', 'channel_id'),
                   ('@extschema@.wa_messages', 'channel_id'), ('@extschema@.wa_conversation_state', 'channel_id'),
                   ('@extschema@.wa_message_statuses', 'channel_id'), ('@extschema@.wa_channel_counters', 'channel_id'),
                   ('@extschema@.wa_templates', 'channel_id'), ('@extschema@.wa_media', 'channel_id'),
                   ('@extschema@.wa_channel_events', 'channel_id'), ('@extschema@.wa_call_events', 'channel_id'),
                   ('@extschema@.wa_actions', 'channel_id'), ('@extschema@.wa_group_join_requests', 'channel_id'))
           AS t (table_name, channel_column);
END;

-- Row-level security for the new table, as CREATE EXTENSION makes it.
ALTER TABLE wa_group_join_requests ENABLE ROW LEVEL SECURITY;
SELECT _wa_apply_policies();

CREATE FUNCTION "_wa_create_group_request"(
	"subject" TEXT, /* Option < & str > */
	"description" TEXT, /* Option < & str > */
	"join_approval_required" bool /* Option < bool > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_create_group_request_wrapper';

CREATE FUNCTION "_wa_reset_group_invite_link_request"() RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_reset_group_invite_link_request_wrapper';

CREATE FUNCTION "_wa_group_join_requests_request"(
	"join_request_ids" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_group_join_requests_request_wrapper';

CREATE FUNCTION "_wa_remove_group_participants_request"(
	"participants" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_remove_group_participants_request_wrapper';

-- A group_create webhook records the request id of the creation behind it.
CREATE OR REPLACE FUNCTION _wa_receive_group_events(channels bigint[], group_ids text[], kinds text[], ats double precision[],
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

CREATE FUNCTION _wa_require_group(ch bigint, channel text, group_id text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM @extschema@.wa_groups g WHERE g.channel_id = ch AND g.group_id = _wa_require_group.group_id) THEN
        RAISE EXCEPTION '% is not a group of channel %', pg_catalog.quote_nullable(group_id), pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object',
                  HINT = 'A group is known from its group_create webhook (after wa_create_group(); subscribe the app to group_lifecycle_update) or its first message; see SELECT group_id, subject FROM wa_groups.';
    END IF;
    RETURN group_id;
END
$$;

CREATE FUNCTION wa_create_group(channel text, subject text, description text DEFAULT NULL,
                                join_approval_required boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'create_group', pg_catalog.btrim(subject),
                                          @extschema@._wa_create_group_request(subject, description, join_approval_required));
END
$$;

CREATE FUNCTION wa_get_group_invite_link(channel text, group_id text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'get_group_invite_link', @extschema@._wa_require_group(ch, channel, group_id), NULL);
END
$$;

CREATE FUNCTION wa_reset_group_invite_link(channel text, group_id text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'reset_group_invite_link', @extschema@._wa_require_group(ch, channel, group_id),
                                          @extschema@._wa_reset_group_invite_link_request());
END
$$;

CREATE FUNCTION wa_list_group_join_requests(channel text, group_id text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'list_group_join_requests', @extschema@._wa_require_group(ch, channel, group_id), NULL);
END
$$;

CREATE FUNCTION wa_approve_group_join_requests(channel text, group_id text, join_request_ids text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'approve_group_join_requests', @extschema@._wa_require_group(ch, channel, group_id),
                                          @extschema@._wa_group_join_requests_request(join_request_ids));
END
$$;

CREATE FUNCTION wa_reject_group_join_requests(channel text, group_id text, join_request_ids text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'reject_group_join_requests', @extschema@._wa_require_group(ch, channel, group_id),
                                          @extschema@._wa_group_join_requests_request(join_request_ids));
END
$$;

CREATE FUNCTION wa_remove_group_participants(channel text, group_id text, participants text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch bigint := @extschema@._wa_require_channel(channel, 'send');
BEGIN
    RETURN @extschema@._wa_enqueue_action(ch, 'remove_group_participants', @extschema@._wa_require_group(ch, channel, group_id),
        @extschema@._wa_remove_group_participants_request(
            ARRAY(SELECT @extschema@.wa_normalize_recipient(p) FROM unnest(participants) p)));
END
$$;

-- What a group action's answer changes here: the invite link, the open join requests.
CREATE OR REPLACE FUNCTION _wa_action_done(action_id bigint, result jsonb, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a @extschema@.wa_actions;
    u jsonb;
BEGIN
    UPDATE @extschema@.wa_actions x
       SET status = 'done', result = _wa_action_done.result, next_attempt_at = NULL, done_at = pg_catalog.now(),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = action_id AND x.status || '' = 'sending'
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF a.kind IN ('block', 'unblock') THEN
        FOR u IN SELECT * FROM pg_catalog.jsonb_array_elements(
                    COALESCE(result -> CASE a.kind WHEN 'block' THEN 'added_users' ELSE 'removed_users' END, '[]')) LOOP
            IF a.kind = 'block' AND u ->> 'wa_id' IS NOT NULL THEN
                -- (a customer not known yet becomes a contact, so that the block is kept)
                INSERT INTO @extschema@.wa_contacts AS k (channel_id, wa_id, blocked_at) VALUES (a.channel_id, u ->> 'wa_id', pg_catalog.now())
                ON CONFLICT (channel_id, wa_id) WHERE wa_id IS NOT NULL DO UPDATE SET blocked_at = pg_catalog.now(), updated_at = pg_catalog.now();
            END IF;
            UPDATE @extschema@.wa_contacts k
               SET blocked_at = CASE a.kind WHEN 'block' THEN pg_catalog.now() END, updated_at = pg_catalog.now()
             WHERE k.channel_id = a.channel_id
               AND (k.wa_id = COALESCE(u ->> 'wa_id', pg_catalog.ltrim(u ->> 'input', '+')) OR k.user_id = u ->> 'input')
               AND (k.blocked_at IS NULL) = (a.kind = 'block');
        END LOOP;
    ELSIF a.kind = 'create_template' THEN
        INSERT INTO @extschema@.wa_templates AS t (channel_id, name, language, status, category, components, template_id)
        VALUES (a.channel_id, a.target, a.request ->> 'language', COALESCE(result ->> 'status', 'PENDING'),
                COALESCE(result ->> 'category', a.request ->> 'category'), a.request -> 'components', result ->> 'id')
        ON CONFLICT (channel_id, name, language) DO UPDATE
           SET status = excluded.status, category = excluded.category, components = excluded.components,
               template_id = excluded.template_id, reason = NULL, status_at = NULL, updated_at = pg_catalog.now()
         -- (a status webhook about this very template that came first is newer: kept)
         WHERE t.template_id IS DISTINCT FROM excluded.template_id OR t.status_at IS NULL;
    ELSIF a.kind = 'delete_template' THEN
        DELETE FROM @extschema@.wa_templates t WHERE t.channel_id = a.channel_id AND t.name = a.target;
    ELSIF a.kind IN ('get_group_invite_link', 'reset_group_invite_link') THEN
        UPDATE @extschema@.wa_groups g SET invite_link = result ->> 'invite_link', updated_at = pg_catalog.now()
         WHERE g.channel_id = a.channel_id AND g.group_id = a.target AND g.invite_link IS DISTINCT FROM result ->> 'invite_link';
        IF FOUND THEN
            PERFORM pg_catalog.pg_notify('wa_group', pg_catalog.json_build_object('channel_id', a.channel_id)::text);
        END IF;
    ELSIF a.kind = 'list_group_join_requests' THEN
        -- (the group may have been deleted since the listing was queued: then nothing is kept)
        INSERT INTO @extschema@.wa_group_join_requests AS j (channel_id, group_id, join_request_id, wa_id, requested_at)
        SELECT a.channel_id, a.target, r ->> 'join_request_id', r ->> 'wa_id',
               @extschema@._wa_unix_time((r ->> 'creation_timestamp')::double precision)
          FROM pg_catalog.jsonb_array_elements(result -> 'data') r
         WHERE r ->> 'join_request_id' IS NOT NULL
           AND EXISTS (SELECT FROM @extschema@.wa_groups g WHERE g.channel_id = a.channel_id AND g.group_id = a.target)
        ON CONFLICT (channel_id, group_id, join_request_id) DO UPDATE
           SET wa_id = excluded.wa_id, requested_at = excluded.requested_at, listed_at = pg_catalog.now();
        -- Meta lists the open ones: one it no longer lists was withdrawn or decided elsewhere. A
        -- listing with more pages (paging.next) is only added to.
        IF result #> '{paging,next}' IS NULL THEN
            DELETE FROM @extschema@.wa_group_join_requests j
             WHERE j.channel_id = a.channel_id AND j.group_id = a.target
               AND j.join_request_id NOT IN (SELECT r ->> 'join_request_id' FROM pg_catalog.jsonb_array_elements(result -> 'data') r
                                              WHERE r ->> 'join_request_id' IS NOT NULL);
        END IF;
    ELSIF a.kind IN ('approve_group_join_requests', 'reject_group_join_requests') THEN
        DELETE FROM @extschema@.wa_group_join_requests j
         WHERE j.channel_id = a.channel_id AND j.group_id = a.target
           AND j.join_request_id IN (SELECT pg_catalog.jsonb_array_elements_text(COALESCE(
                   result -> CASE a.kind WHEN 'approve_group_join_requests' THEN 'approved_join_requests' ELSE 'rejected_join_requests' END,
                   '[]')));
    END IF;
    PERFORM @extschema@._wa_notify_action(a);
END
$$;

-- The new and replaced functions: their planner settings and privileges, as a fresh install has them.
SELECT _wa_plan_hot_paths();
SELECT _wa_apply_privileges();
-- (end of issue 28, item 5)

-- Issue 29: wa_contacts' two unique keys become partial unique indexes, and a channel index
-- serves scans by channel, so that a lookup by one id can only use its own index whatever the
-- statistics (see sql/schema.sql). The same uniqueness: a NULL id never conflicted. (The ON
-- CONFLICT (channel_id, wa_id) of _wa_apply_contact_syncs and _wa_action_done, above, name the
-- partial index's predicate.)
ALTER TABLE wa_contacts DROP CONSTRAINT wa_contacts_channel_id_wa_id_key, DROP CONSTRAINT wa_contacts_channel_id_user_id_key;
CREATE UNIQUE INDEX wa_contacts_channel_id_wa_id_key ON wa_contacts (channel_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE UNIQUE INDEX wa_contacts_channel_id_user_id_key ON wa_contacts (channel_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX wa_contacts_channel ON wa_contacts (channel_id, id);

-- Issue 29: a delivery turn that only records accepted sends claims only if one of their
-- customers has another message queued (the one new function), and that function's planner
-- settings (sql/plans.sql).
-- Whether a customer of these messages (sends just recorded as accepted) has another message
-- queued, which heads their queue now. A delivery turn that records only accepted sends, with
-- no commit, retry or due time since its last claim, claims only if so: nothing else can have
-- made a message claimable (src/outbound/delivery.rs, `must_look`). At 200 sends a second half
-- of the turns are such turns, and the claim was most of a turn's cost. One probe of
-- wa_messages_outbox a message (_wa_queue_head).
CREATE FUNCTION _wa_queued_behind(msg_ids bigint[]) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (PL/pgSQL, not SQL, to keep its plan for the session; planned as a batch join: sql/plans.sql.)
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM unnest(msg_ids) AS u(id)
                     JOIN @extschema@.wa_messages x ON x.id = u.id
                    CROSS JOIN LATERAL @extschema@._wa_queue_head(x.channel_id, x.recipient) h
                    WHERE h.id IS NOT NULL);
END
$$;

-- The inbox's "all conversations" read, newest first, without sorting every conversation
-- (see sql/schema.sql).
CREATE INDEX wa_conversation_state_recent ON wa_conversation_state (last_message_at DESC NULLS LAST);

-- Issue 29: a status that records a send (one a restart interrupted, which waits in the queue
-- for it) wakes the delivery worker, which looks at that customer's queue at once. (Its
-- planner settings come back with _wa_plan_hot_paths below: a replaced function loses them.)
CREATE OR REPLACE FUNCTION _wa_receive_statuses(channels bigint[], wamids text[], statuses text[], status_ats double precision[],
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

-- Issue 29: media downloads on their own wake and due time. The delivery worker looks for them
-- only when a commit stored media (_wa_wake_media), a download ended or one falls due
-- (_wa_next_media_due_in), not at every turn that claims messages; _wa_next_due_in is about
-- messages only.
CREATE FUNCTION "_wa_wake_media"() RETURNS void
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wa_wake_media_wrapper';

CREATE FUNCTION _wa_next_media_due_in() RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT extract(epoch FROM pg_catalog.min(j.next_attempt_at) - pg_catalog.now())::double precision
      FROM @extschema@.wa_media j WHERE j.status = 'pending';
END;

CREATE OR REPLACE FUNCTION _wa_next_due_in() RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (Planned as a queue read: see sql/plans.sql.)
AS $$
DECLARE
    due timestamptz;
BEGIN
    SELECT least(
        -- (an unreachable channel's queue is due at its next probe at the soonest)
        (SELECT pg_catalog.min(greatest(h.next_attempt_at, c.next_probe_at))
           FROM @extschema@.wa_channels c
          CROSS JOIN LATERAL (
                SELECT m.next_attempt_at FROM @extschema@._wa_queue_heads(c.id) m
                 ORDER BY m.next_attempt_at
                 LIMIT 1) h
          WHERE c.enabled AND c.paused_at IS NULL),
        -- scheduled messages, released into the queue by the claim (wa_messages_scheduled)
        (SELECT pg_catalog.min(m.next_attempt_at) FROM @extschema@.wa_messages m WHERE m.status = 'scheduled'))
      INTO due;
    -- (greatest() ignores NULL: nothing due must stay NULL, not become 0.)
    RETURN CASE WHEN due IS NOT NULL THEN greatest(0, extract(epoch FROM due - pg_catalog.now()))::double precision END;
END
$$;

CREATE OR REPLACE FUNCTION _wa_plan_hot_paths() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan record;
    f regprocedure;
BEGIN
    FOR plan IN VALUES
        -- Batch writes. Each statement joins a batch (tens to thousands of rows) to tables of
        -- millions: only nested loops over their unique indexes keep its cost independent of
        -- the tables' size, for a batch of any size. (No JIT: nothing here runs long.) Generic
        -- plans: those nested loops suit every batch size, and a custom plan per call (which
        -- PL/pgSQL keeps choosing when a batch's size makes the generic estimate look worse)
        -- was a third of the delivery worker's time in _wa_apply_statuses, measured with perf.
        (ARRAY['_wa_receive_messages', '_wa_receive_statuses', '_wa_apply_statuses', '_wa_receive_echoes',
               '_wa_receive_history'],
         'SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off SET plan_cache_mode = force_generic_plan'),
        -- A batch join of the delivery worker: a turn's accepted sends to their messages, the
        -- same nested loops, and generic plans for the same reason: planned again at every
        -- turn, its UPDATE and its locking read cost 280 and 315 µs of planning against 230
        -- and 66 of execution (pg_stat_statements, 200 sends a second, one a turn).
        -- (_wa_queued_behind: the same turn's sends, to their customers' queues.)
        (ARRAY['_wa_mark_sent_all', '_wa_queued_behind'],
         'SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off SET plan_cache_mode = force_generic_plan'),
        -- Queue reads. The statistics of a queue are always out of date (a burst fills it
        -- faster than it is analyzed), and on them a bitmap scan of a whole channel plus a sort
        -- can look cheapest. Only index scans: a queue is then read in due order and the
        -- reading stops at the LIMIT. (No JIT: the cost penalty of the disabled scans would
        -- make every turn compile, 190 ms, measured.) Generic plans: the claim's UPDATE by
        -- primary key was planned again at every turn, 460 µs of planning against 165 of
        -- execution (measured as above).
        (ARRAY['_wa_claim_due', '_wa_next_due_in'],
         'SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off SET plan_cache_mode = force_generic_plan')
    LOOP
        IF (SELECT count(*) FROM @extschema@._wa_own_functions(plan.column1)) <> pg_catalog.cardinality(plan.column1) THEN
            RAISE EXCEPTION 'a function of % does not exist (a rename not made in sql/plans.sql?)', plan.column1;
        END IF;
        FOR f IN SELECT * FROM @extschema@._wa_own_functions(plan.column1)
        LOOP
            EXECUTE pg_catalog.format('ALTER FUNCTION %s %s', f, plan.column2);
        END LOOP;
    END LOOP;
END
$$;

-- Issue 29 (found measuring the media wake).
-- A channel keeps its credentials row while it exists: wa_add_channel() writes both, and the
-- claims of every queue (sends, actions, media downloads) join the two. Deleted by hand, the
-- row took the channel's work with it unsaid: its queues were never claimed and never failed,
-- and its due downloads held the media claim's places (the delivery worker looked every 5 ms).
-- Deleting the channel still deletes the row (ON DELETE CASCADE runs once the channel's row
-- is gone).
CREATE FUNCTION _wa_channel_secrets_kept() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM @extschema@.wa_channels c WHERE c.id = OLD.channel_id) THEN
        RAISE EXCEPTION 'channel ''%'' cannot lose its credentials while it exists', (SELECT c.name FROM @extschema@.wa_channels c WHERE c.id = OLD.channel_id)
            USING ERRCODE = 'integrity_constraint_violation',
                  HINT = 'Replace the access token with wa_set_access_token(), or delete the channel itself (DELETE FROM wa_channels WHERE name = ''…''), which deletes its credentials.';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER wa_channel_secrets_kept BEFORE DELETE ON wa_channel_secrets
    FOR EACH ROW EXECUTE FUNCTION _wa_channel_secrets_kept();

-- (TRUNCATE runs no row trigger: the same rule for it, after the TRUNCATE, so that
-- TRUNCATE wa_channels CASCADE, which empties both, passes.)
CREATE FUNCTION _wa_channel_secrets_truncated() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM @extschema@.wa_channels) THEN
        RAISE EXCEPTION 'the channels cannot lose their credentials while they exist'
            USING ERRCODE = 'integrity_constraint_violation',
                  HINT = 'Replace an access token with wa_set_access_token(), or delete the channels themselves (DELETE FROM wa_channels), which deletes their credentials.';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER wa_channel_secrets_kept_on_truncate AFTER TRUNCATE ON wa_channel_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION _wa_channel_secrets_truncated();

-- Issue 29 (found measuring the media wake): media downloads through a refused token and an
-- outage. A refused token pauses the channel and the downloads wait for a new one; an outage
-- is waited out; neither uses up an attempt (_wa_media_waits). The claim says how long a job has waited, so that
-- the delivery worker gives up only once the media id's 7 days are over (src/media/download.rs).
-- (wa_set_access_token, above, makes the channel's downloads due at once.)
DROP FUNCTION _wa_claim_media(integer, text);
-- Up to max_jobs due downloads, marked 'downloading' with one more attempt, each with what its
-- Graph API calls need and how long it has waited (waited_seconds: since the message came; the
-- media id behind it lives 7 days at Meta, which bounds retrying while Meta is out of reach).
CREATE FUNCTION _wa_claim_media(max_jobs integer, default_version text)
RETURNS TABLE (message_id bigint, media_id text, expected_sha256 text, attempts integer, phone_number_id text,
               graph_api_version text, access_token text, waited_seconds double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT j.message_id FROM @extschema@.wa_media j
         WHERE j.status = 'pending' AND j.next_attempt_at <= pg_catalog.now()
         ORDER BY j.next_attempt_at LIMIT max_jobs
    )
    UPDATE @extschema@.wa_media j
       SET status = 'downloading', attempts = j.attempts + 1, updated_at = pg_catalog.now()
      FROM due, @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE j.message_id = due.message_id AND c.id = j.channel_id AND s.channel_id = c.id
    RETURNING j.message_id, j.media_id, j.expected_sha256, j.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token,
              extract(epoch FROM pg_catalog.now() - j.created_at)::double precision;
END
$$;

-- A download that could not run for a reason not its own (Meta out of reach, its token
-- refused): back in the queue after `wait_seconds`, its attempt given back, and the channel's
-- other waiting downloads wait at least as long, so that the cause is probed by one call per
-- download slot, not one per photo. (A wait of 0 postpones nothing.) Such a download never
-- uses up its attempts, as an outage never fails a send by count; the delivery worker gives
-- it up only once its media id has expired (src/media/download.rs).
CREATE FUNCTION _wa_media_waits(p_message_id bigint, p_error text, wait_seconds double precision) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_media j
       SET next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => wait_seconds)
      FROM @extschema@.wa_media this
     WHERE this.message_id = p_message_id AND j.channel_id = this.channel_id AND j.status = 'pending'
       AND wait_seconds > 0 AND j.next_attempt_at < pg_catalog.now() + pg_catalog.make_interval(secs => wait_seconds);
    UPDATE @extschema@.wa_media j
       SET status = 'pending', attempts = j.attempts - 1, error = p_error, updated_at = pg_catalog.now(),
           next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => wait_seconds)
     WHERE j.message_id = p_message_id AND j.status = 'downloading';
END;

-- A download whose access token Meta refused. `refused_token_sha256` is the hex SHA-256 of the
-- token it was tried with (the token itself is in no statement, parameter or log line).
-- - While the channel still has that token: the channel is paused, as a refused send pauses
--   it (once: every UPDATE of wa_channels wakes both workers, changed row or not), and the
--   download waits `wait_seconds` with the channel's other waiting ones (_wa_media_waits): a
--   refused token costs one call per download slot each time, plus one per photo that comes
--   meanwhile. wa_set_access_token() makes them due at once.
-- - When the token was replaced while the call was out, or is being replaced now: due again at
--   once, with the new one. (The credentials row is read FOR SHARE, which waits for a
--   wa_set_access_token() in progress and then reads its token: a late refusal of the old
--   token never pauses a channel that has a new one. wa_set_access_token locks in the same
--   order: credentials, channel, downloads.)
-- Either way its attempt is given back: the file stays at Meta for 7 days.
CREATE FUNCTION _wa_media_waits_for_token(p_message_id bigint, refused_token_sha256 text, reason text, wait_seconds double precision)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    channel bigint := (SELECT j.channel_id FROM @extschema@.wa_media j WHERE j.message_id = p_message_id);
BEGIN
    PERFORM FROM @extschema@.wa_channel_secrets s
      WHERE s.channel_id = channel
        AND pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(s.access_token, 'UTF8')), 'hex') = refused_token_sha256
        FOR SHARE;
    IF NOT FOUND THEN
        PERFORM @extschema@._wa_media_waits(p_message_id, reason, 0);
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM @extschema@.wa_channels c WHERE c.id = channel AND c.paused_at IS NULL) THEN
        UPDATE @extschema@.wa_channels c SET paused_at = pg_catalog.now(), paused_reason = reason WHERE c.id = channel;
    END IF;
    PERFORM @extschema@._wa_media_waits(p_message_id, reason, wait_seconds);
END
$$;

SELECT _wa_plan_hot_paths();
SELECT _wa_apply_privileges();

-- The workers waited while the schema was older than the library; wake them at COMMIT.
SELECT _wa_wake_listener();
SELECT _wa_wake_delivery();
