-- The pure helpers, which anyone may call (README, "Roles"): wa_normalize_phone,
-- wa_normalize_recipient, wa_error_hint, wa_verify_signature. Each refusal: message, hint,
-- SQLSTATE.
\set SHOW_CONTEXT never

-- wa_normalize_phone: any usual format to +E.164 (README, "SQL interface").
SELECT input, wa_normalize_phone(input)
  FROM (VALUES ('15551234567'), ('+1 (555) 123-4567'), ('+1 555.123.4567'), ('  +44 20 7946 0958  '),
               ('00 44 20 7946 0958')) v(input);
SELECT wa_normalize_phone(NULL) IS NULL AS null_is_null;
SELECT wa_normalize_phone('not a number'); \echo :SQLSTATE
SELECT wa_normalize_phone(''); \echo :SQLSTATE
SELECT wa_normalize_phone('1234567'); \echo :SQLSTATE
SELECT wa_normalize_phone('1234567890123456'); \echo :SQLSTATE
-- A BSUID is a recipient, not a phone number.
SELECT wa_normalize_phone('US.13491208655302741918'); \echo :SQLSTATE

-- wa_normalize_recipient: a phone number as above, a BSUID or a group id as they are.
SELECT input, wa_normalize_recipient(input)
  FROM (VALUES ('1 555 123 4567'), ('US.13491208655302741918'),
               ('Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD')) v(input);
SELECT wa_normalize_recipient(NULL) IS NULL AS null_is_null;
SELECT wa_normalize_recipient('US.'); \echo :SQLSTATE
SELECT wa_normalize_recipient('+1 555 CALL NOW'); \echo :SQLSTATE

-- wa_error_hint: what to do about a Graph API error code; NULL for a code it has nothing on.
SELECT code, wa_error_hint(code)
  FROM (VALUES (0), (4), (100), (190), (368), (80007), (130429), (131026), (131047), (131049), (131056),
               (132000), (133010), (131000), (1), (NULL)) v(code);

-- wa_verify_signature: sha256= and the hex HMAC-SHA256 of the raw bytes with the app secret
-- (the signatures below were computed apart, with Python's hmac).
\set secret '''0123456789abcdef0123456789abcdef'''
\set body '''{"object":"whatsapp_business_account"}'''
\set good '''sha256=e3d59d231b02104529f72ed309769c75fdbc42fc9cb15257538b2012f031af65'''
SELECT wa_verify_signature(:secret, :body::text, :good) AS text_body,
       wa_verify_signature(:secret, convert_to(:body, 'UTF8'), :good) AS bytea_body,
       wa_verify_signature('ffffffffffffffffffffffffffffffff', :body::text, :good) AS other_secret,
       wa_verify_signature(:secret, :body || ' ', :good) AS other_body,
       wa_verify_signature(:secret, :body::text, NULL) AS no_header,
       wa_verify_signature(:secret, :body::text, '') AS empty_header,
       wa_verify_signature(:secret, :body::text, substr(:good, 8)) AS without_prefix,
       wa_verify_signature(:secret, :body::text, 'sha1=' || substr(:good, 8)) AS sha1_prefix,
       wa_verify_signature(:secret, :body::text, left(:good, -2)) AS truncated;
-- A NULL secret or body is refused by name (22004) rather than answered false.
SELECT wa_verify_signature(NULL, :body::text, :good); \echo :SQLSTATE
SELECT wa_verify_signature(:secret, NULL::bytea, :good); \echo :SQLSTATE
-- A non-ASCII body: Meta may sign its raw UTF-8 bytes or its \uXXXX-escaped form, and sends
-- the raw bytes either way; both signatures verify the raw body.
SELECT wa_verify_signature(:secret, '{"text":"héllo 👍"}'::text,
                           'sha256=409650394a9d031b0bf7594db3cbd4eab9e431757eb35f13d102704e71197fce') AS raw_signed,
       wa_verify_signature(:secret, '{"text":"héllo 👍"}'::text,
                           'sha256=53595bb2bdf89dc08cc93c689904cf9c2f2a7f2fc4cfe34747eeb9be5851ccdc') AS escaped_signed,
       wa_verify_signature(:secret, '{"text":"h\u00e9llo \ud83d\udc4d"}'::text,
                           'sha256=53595bb2bdf89dc08cc93c689904cf9c2f2a7f2fc4cfe34747eeb9be5851ccdc') AS escaped_body;
-- Immutable and parallel safe, as a pure function may be.
SELECT p.oid::regprocedure AS function, p.provolatile, p.proparallel, p.proisstrict
  FROM pg_proc p
 WHERE p.proname IN ('wa_normalize_phone', 'wa_normalize_recipient', 'wa_error_hint', 'wa_verify_signature')
 ORDER BY p.oid::regprocedure::text;
