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
