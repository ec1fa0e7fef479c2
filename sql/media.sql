-- whatsapp_channel: media downloads (done by the delivery worker) and their bytes.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- ---------------------------------------------------------------------------------------------
-- Media downloads (done by the delivery worker)

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

-- Seconds until the next media download falls due, a new one or a retry (negative: overdue, the
-- delivery worker counts it as now); NULL when none waits. Asked by the worker after it looked
-- for media (not greatest(0, ...), which would turn NULL into 0: see _wa_next_action_due_in).
CREATE FUNCTION _wa_next_media_due_in() RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT extract(epoch FROM pg_catalog.min(j.next_attempt_at) - pg_catalog.now())::double precision
      FROM @extschema@.wa_media j WHERE j.status = 'pending';
END;

-- Records the end of a download job: 'done' (with the bytes, unless only metadata is kept),
-- 'failed' or 'skipped'; or back to 'pending' after `retry_in` seconds. Notifies wa_media
-- ({"message_id", "channel_id"}: wa_media says how it ended).
CREATE FUNCTION _wa_finish_media(p_message_id bigint, p_status text, p_mime_type text, p_sha256 text, p_size bigint,
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

-- Downloads interrupted by a restart go back to the queue.
CREATE FUNCTION _wa_requeue_media() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_media j SET status = 'pending', updated_at = pg_catalog.now() WHERE j.status = 'downloading';
END;

-- The bytes of a message's media, once downloaded (NULL before, or if they were not kept, or
-- if the caller may not read the message's channel: exactly as for a message that does not
-- exist, so that another channel's ids tell nothing).
CREATE FUNCTION wa_media_content(message_id bigint) RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT j.content FROM @extschema@.wa_media j
     WHERE j.message_id = wa_media_content.message_id AND j.status = 'done'
       AND j.channel_id = ANY (@extschema@._wa_visible_channels(@extschema@._wa_caller()));
END;
