-- whatsapp_channel: customers' marketing preferences. Meta tells a business that a customer
-- stopped (or resumed) its marketing messages with the user_preferences webhook and the
-- user_preference_changed system message, and refuses a marketing template to such a customer
-- with error 131050. Each of these sets wa_contacts.marketing_opt_out_at, by the event's own
-- time so that an older event never overrides a newer one; wa_send_template refuses a
-- MARKETING template to an opted-out contact at enqueue (_wa_refuse_marketing_opt_out), where
-- the caller can act, rather than paying for it in quality rating later.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

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
