-- whatsapp_channel: privileges. Runs last in CREATE EXTENSION (finalize), once every function
-- exists, SQL and Rust alike.

-- ---------------------------------------------------------------------------------------------
-- Privileges, as one allow-list: first no function of the extension may be called by PUBLIC,
-- then PUBLIC gets back exactly the pure helpers below. A function added later is therefore
-- closed until someone decides otherwise (a hand-kept REVOKE list once missed one). The
-- wa_send_* family and wa_media_content are granted to an inbox role by the administrator;
-- see README, "Roles". Every upgrade script ends with SELECT _wa_apply_privileges() (after a
-- CREATE OR REPLACE of it when the allow-list changes), so the rule is written once.

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
