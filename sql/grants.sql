-- whatsapp_channel: channels as the unit of access. A role sees the rows of the channels it
-- holds `read` (or more) on, and sends on the channels it holds `send` on; the extension owner,
-- superusers, BYPASSRLS roles and roles holding `admin` see and do everything. Enforced by
-- Postgres itself: row-level security on every table that holds a channel's data (filtered by
-- the grants, read again when they change), and a check at the top of every SECURITY DEFINER
-- function of the API. README, "Roles".
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

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
                   ('@extschema@.wa_templates', 'channel_id'), ('@extschema@.wa_media', 'channel_id'),
                   ('@extschema@.wa_channel_events', 'channel_id'), ('@extschema@.wa_call_events', 'channel_id'),
                   ('@extschema@.wa_actions', 'channel_id'), ('@extschema@.wa_group_join_requests', 'channel_id'))
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
