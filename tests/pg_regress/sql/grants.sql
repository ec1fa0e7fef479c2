-- Channel grants (README, "Roles"): what wa_grant_channel and wa_revoke_channel accept and
-- refuse, that send includes read and admin everything, and what a non-admin may not do.
\set SHOW_CONTEXT never
SET client_min_messages = error;
SELECT regress_channel('grants', '200201');
CREATE ROLE regress_grantee;
CREATE ROLE regress_lead;

-- Grants only add: read under send changes nothing; send over read replaces it.
SELECT wa_grant_channel('grants', 'regress_grantee', 'read');
SELECT wa_grant_channel('grants', 'regress_grantee', 'send');
SELECT wa_grant_channel('grants', 'regress_grantee', 'read');
SELECT channel, role, privilege FROM wa_channel_access;
-- Revoking send leaves read; revoking without a privilege removes the rest.
SELECT wa_revoke_channel('grants', 'regress_grantee', 'send');
SELECT channel, role, privilege FROM wa_channel_access;
SELECT wa_revoke_channel('grants', 'regress_grantee');
SELECT wa_revoke_channel('grants', 'regress_grantee') AS changed_again;
SELECT count(*) AS grants FROM wa_channel_access;

-- Refused: an unknown privilege, admin on one channel, read or send on none, a NULL role, an
-- unknown channel or role.
SELECT wa_grant_channel('grants', 'regress_grantee', 'write'); \echo :SQLSTATE
SELECT wa_grant_channel('grants', 'regress_grantee', 'admin'); \echo :SQLSTATE
SELECT wa_grant_channel(NULL, 'regress_grantee', 'send'); \echo :SQLSTATE
SELECT wa_grant_channel('grants', NULL); \echo :SQLSTATE
SELECT wa_grant_channel('no-such-channel', 'regress_grantee'); \echo :SQLSTATE
SELECT wa_grant_channel('grants', 'no_such_role'); \echo :SQLSTATE
SELECT wa_revoke_channel(NULL, 'regress_grantee', 'send'); \echo :SQLSTATE
-- A superuser has everything already: granted, with a notice.
SET client_min_messages = notice;
SELECT wa_grant_channel('grants', 'postgres');
SET client_min_messages = error;
SELECT wa_revoke_channel('grants', 'postgres');

-- Admin: every channel, present and future; it manages grants and channels (with EXECUTE on
-- the functions, as any role needs).
GRANT EXECUTE ON FUNCTION wa_grant_channel(text, regrole, wa_channel_privilege), wa_add_channel(text, text, text, text, text, text)
   TO regress_lead;
GRANT SELECT ON wa_channels TO regress_lead;
SELECT wa_grant_channel(NULL, 'regress_lead', 'admin');
SET ROLE regress_lead;
SELECT wa_grant_channel('grants', 'regress_grantee', 'read');
SELECT regress_channel('grants-later', '200202');
SELECT _wa_visible_channels('regress_lead') = (SELECT array_agg(id ORDER BY id) FROM wa_channels WHERE name LIKE 'grants%') AS sees_every_channel;
RESET ROLE;
SELECT channel, role, privilege FROM wa_channel_access ORDER BY role;

-- A role that is not an admin manages nothing, even with EXECUTE.
GRANT EXECUTE ON FUNCTION wa_grant_channel(text, regrole, wa_channel_privilege), wa_revoke_channel(text, regrole, wa_channel_privilege)
   TO regress_grantee;
SET ROLE regress_grantee;
SELECT wa_grant_channel('grants', 'regress_grantee', 'send'); \echo :SQLSTATE
SELECT wa_revoke_channel('grants', 'regress_grantee'); \echo :SQLSTATE
RESET ROLE;

SELECT wa_revoke_channel(NULL, 'regress_lead', 'admin');
DELETE FROM wa_channels WHERE name LIKE 'grants%';
SELECT count(*) AS grants_left FROM wa_channel_grants;
DROP OWNED BY regress_grantee, regress_lead;
DROP ROLE regress_grantee, regress_lead;
