-- whatsapp_channel: channel administration: the webhook URL to give Meta, the access token,
-- and the triggers that tell both workers a channel changed. (wa_add_channel() is in Rust:
-- src/channels/mod.rs.)
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

CREATE FUNCTION wa_webhook_url(channel text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := nullif(pg_catalog.current_setting('whatsapp_channel.public_url', true), '');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.wa_channels c WHERE c.name = channel) THEN
        RAISE EXCEPTION 'unknown channel %', pg_catalog.quote_literal(channel)
            USING ERRCODE = 'undefined_object', HINT = 'Create it with wa_add_channel(), or list channels with SELECT name FROM wa_channels.';
    END IF;
    IF base IS NULL THEN
        base := 'http://' || coalesce(pg_catalog.current_setting('whatsapp_channel.listen_address', true), '127.0.0.1:8080');
        RAISE NOTICE 'whatsapp_channel.public_url is not set: this URL is only reachable from this machine'
            USING HINT = 'Meta needs a public https URL: put a TLS proxy or tunnel in front of whatsapp_channel.listen_address and set whatsapp_channel.public_url to its address.';
    END IF;
    RETURN pg_catalog.rtrim(base, '/') || '/webhook/' || channel;
END
$$;

-- Replaces a channel's access token (an expired temporary token, a rotated system-user token),
-- resumes a queue that a token error paused, and makes the channel's waiting media downloads
-- due at once (those the old token was refused for wait for this: _wa_media_waits_for_token).
CREATE FUNCTION wa_set_access_token(channel text, access_token text) RETURNS void
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

-- Sets a channel's access token from a file on the database server (its first line, blanks
-- trimmed), so that the token is in no statement text, bind parameter, pg_stat_activity row or
-- log line: only the path is. Runs with the caller's own rights (not SECURITY DEFINER): reading
-- a server file takes a superuser, or EXECUTE on pg_read_file(text) and, for a file outside the
-- data directory, pg_read_server_files; the caller needs EXECUTE on wa_set_access_token too.
CREATE FUNCTION wa_set_access_token_from_file(channel text, path text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.wa_set_access_token(
        channel, pg_catalog.btrim(pg_catalog.split_part(pg_catalog.pg_read_file(path), E'\n', 1), E' \t\r'));
END
$$;

-- Any change to a channel or its secrets wakes both workers at commit: the delivery worker
-- looks at the queue again at once (resumed, enabled, a new rate limit or token), and the
-- webhook listener re-reads its channels (a new channel, a rotated app secret or verify token),
-- so that no request ever waits for a reload and a miss is answered from what is committed.
CREATE FUNCTION _wa_channel_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._wa_wake_delivery();
    PERFORM @extschema@._wa_wake_listener();
    RETURN NULL;
END
$$;

CREATE TRIGGER wa_channels_wake AFTER INSERT OR UPDATE OR DELETE ON wa_channels
    FOR EACH STATEMENT EXECUTE FUNCTION _wa_channel_changed();
CREATE TRIGGER wa_channel_secrets_wake AFTER INSERT OR UPDATE OR DELETE ON wa_channel_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION _wa_channel_changed();

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
