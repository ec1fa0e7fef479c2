-- whatsapp_channel: what Meta says about the business (its account, numbers, limits and
-- templates), webhook-level errors and fields this version does not understand: the one write
-- path of wa_channel_events, and what the extension does about each event. Parsed by
-- crates/whatsapp_cloud/src/webhook/business.rs; called per event by src/inbound/write_path.rs.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

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
