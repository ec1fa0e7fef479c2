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

-- user_changed_user_id keeps the replaced BSUID in wa_contact_former_ids (sql/inbound.sql).
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
        IF FOUND AND k.user_id IS NOT NULL THEN
            INSERT INTO @extschema@.wa_contact_former_ids AS f (channel_id, user_id, contact_id)
            VALUES (k.channel_id, k.user_id, contact)
            ON CONFLICT (channel_id, user_id) DO UPDATE SET contact_id = excluded.contact_id, replaced_at = pg_catalog.now();
            DELETE FROM @extschema@.wa_contact_former_ids f WHERE f.channel_id = k.channel_id AND f.user_id = sys ->> 'user_id';
        END IF;
    END IF;
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
                  HINT = 'Its body: ' || COALESCE((SELECT c ->> 'text' FROM pg_catalog.jsonb_array_elements(t.components) c
                                                    WHERE pg_catalog.upper(c ->> 'type') = 'BODY' LIMIT 1), '(none)')
                      || '. Give each name once: components => ''[{"type":"body","parameters":[{"type":"text","parameter_name":"<name>","text":"..."}, ...]}]''.';
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
                  HINT = 'Its body: ' || COALESCE((SELECT c ->> 'text' FROM pg_catalog.jsonb_array_elements(t.components) c
                                                    WHERE pg_catalog.upper(c ->> 'type') = 'BODY' LIMIT 1), '(none)')
                      || '. Pass components => ''[{"type":"body","parameters":[{"type":"text","text":"..."}, ...]}]''.';
    END IF;
END
$$;

-- Privileges, as in sql/privileges.sql: no function of the extension for PUBLIC but the pure
-- helpers, so that a function added above is closed until granted.
DO $privileges$
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
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$privileges$;
GRANT EXECUTE ON FUNCTION wa_verify_signature(text, bytea, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION wa_verify_signature(text, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION wa_normalize_phone(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION wa_normalize_recipient(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION wa_error_hint(integer) TO PUBLIC;
GRANT EXECUTE ON FUNCTION wa_webhook_url(text) TO PUBLIC;

-- The workers waited while the schema was older than the library; wake them at COMMIT.
SELECT _wa_wake_listener();
SELECT _wa_wake_delivery();
