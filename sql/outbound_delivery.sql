-- whatsapp_channel: the store procedures of the delivery worker: claiming due messages in
-- each customer's order, recording what Meta answered, outages and interrupted sends.
--
-- Every function pins search_path and qualifies the extension's objects with @extschema@,
-- so that objects other roles create cannot be picked up instead (CVE-2018-1058).

-- ---------------------------------------------------------------------------------------------
-- Store procedures for the delivery worker
--
-- A message is found by its primary key, and its status is then compared as `status || ''`:
-- compared plainly, `status = 'sending'` lets the planner prove that the partial index
-- wa_messages_outbox (status IN ('queued', 'sending')) applies, and on statistics that say the
-- queue is empty (a burst fills it faster than it is analyzed) it reads that whole index for
-- every message recorded: measured, 1.3 ms per _wa_mark_sent behind a 10,000-message queue.

-- Claims the messages due now, at most one per recipient (the oldest queued one), so that
-- messages to one customer go out in the order they were queued.
-- The oldest message of a customer's queue that is not done yet (queued or in flight): the only
-- one of theirs that may be sent, so that they receive messages in the order they were queued.
-- A function so that _wa_queue_heads can say it in one place; the planner inlines it. It must
-- stay one probe of wa_messages_outbox per message whatever the statistics say (a queue grows
-- from empty faster than it is analyzed): min(p.id + 0), because for min(p.id) the planner may
-- walk the primary key from the oldest message of all instead (measured: 340 ms per claim).
CREATE FUNCTION _wa_queue_head(channel bigint, recipient text) RETURNS TABLE (id bigint)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT pg_catalog.min(p.id + 0) FROM @extschema@.wa_messages p
     WHERE p.channel_id = _wa_queue_head.channel AND p.recipient = _wa_queue_head.recipient
       AND p.status IN ('queued', 'sending');
END;

-- What is due, the one rule for the claim and _wa_next_due_in: a channel's queued messages that
-- head their customer's queue (none of a customer while one of theirs is in flight). Callers
-- order it by next_attempt_at and stop at their LIMIT; the planner inlines it, so that this is
-- still a read of wa_messages_due in due order that ends there (see _wa_claim_due).
CREATE FUNCTION _wa_queue_heads(channel bigint) RETURNS TABLE (id bigint, next_attempt_at timestamptz)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT m.id, m.next_attempt_at
      FROM @extschema@.wa_messages m
     CROSS JOIN LATERAL @extschema@._wa_queue_head(m.channel_id, m.recipient) head
     WHERE m.channel_id = _wa_queue_heads.channel AND m.status = 'queued' AND head.id = m.id;
END;

-- Scheduled messages (wa_send_*(..., send_at => ...)) whose time has come join the queue, at the
-- place of their id in their customer's order; one whose 24-hour window closed since it was
-- scheduled (Meta would refuse it with 131047), or whose customer was blocked since (wa_block),
-- fails instead, saying so. Each change is
-- notified on wa_status. Run by a claim that finds one due (see _wa_claim_due).
CREATE FUNCTION _wa_release_scheduled() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (PL/pgSQL, not SQL: it runs at every claim, and PL/pgSQL keeps its plan for the session.)
AS $$
DECLARE
    released integer;
BEGIN
    WITH due AS (
        SELECT m.id, @extschema@._wa_window_open(m.channel_id, m.contact_id, m.group_id, m.type, pg_catalog.now()) AS open,
               (SELECT k.blocked_at FROM @extschema@.wa_contacts k WHERE k.id = m.contact_id) AS blocked_at
          FROM @extschema@.wa_messages m
         WHERE m.status = 'scheduled' AND m.next_attempt_at <= pg_catalog.now()
         ORDER BY m.next_attempt_at
         LIMIT 1000
           FOR UPDATE SKIP LOCKED
    ), judged AS (
        SELECT due.id, due.open AND due.blocked_at IS NULL AS sends, due.blocked_at FROM due
    ), changed AS (
        UPDATE @extschema@.wa_messages x
           SET status = CASE WHEN d.sends THEN 'queued' ELSE 'failed' END,
               failed_at = CASE WHEN NOT d.sends THEN pg_catalog.now() END,
               next_attempt_at = CASE WHEN d.sends THEN x.next_attempt_at END,
               error_title = CASE WHEN d.blocked_at IS NOT NULL
                                  THEN x.recipient || ' was blocked (wa_block) at ' || d.blocked_at::text || ', before send_at: not sent'
                                  WHEN NOT d.sends
                                  THEN 'the 24-hour customer-service window with ' || x.recipient
                                       || ' was closed at send_at ' || x.next_attempt_at::text || ': not sent' END,
               error_hint = CASE WHEN d.blocked_at IS NOT NULL
                                 THEN 'Meta refuses messages to a blocked customer; after wa_unblock(), wa_retry_message() sends it.'
                                 WHEN NOT d.sends
                                 THEN 'Only an approved template can (re)open the conversation; wa_retry_message() sends it once they write again.' END,
               updated_at = pg_catalog.now()
          FROM judged d
         WHERE x.id = d.id
        RETURNING x.id, x.channel_id)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', r.id, 'channel_id', r.channel_id)::text))
      INTO released
      FROM (SELECT changed.id, changed.channel_id FROM changed ORDER BY changed.id) r;
END
$$;

CREATE FUNCTION _wa_claim_due(max_messages integer, default_version text, budgets jsonb)
RETURNS TABLE (id bigint, channel_id bigint, max_per_second integer, attempts integer, phone_number_id text,
               graph_api_version text, access_token text, request text, recipient text, kind text, endpoint text,
               probe boolean, expired boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a queue read: see sql/plans.sql.)
AS $$
DECLARE
    chosen bigint[];
BEGIN
    -- Scheduled messages whose time has come join the queue first. Looked for with one probe
    -- of wa_messages_scheduled: the release itself (a locking read, an UPDATE and their
    -- notifications) at every claim was a fifth of a claim's time when none was due (measured).
    IF EXISTS (SELECT FROM @extschema@.wa_messages s WHERE s.status = 'scheduled' AND s.next_attempt_at <= pg_catalog.now()) THEN
        PERFORM @extschema@._wa_release_scheduled();
    END IF;
    -- Claims the messages due now, at most one per recipient (the oldest queued one, and none
    -- while one is in flight), so that messages to one customer go out in the order they were
    -- queued; and per channel at most its budget (the worker's token bucket, `budgets`:
    -- {"<channel id>": n}; a channel not in it may use its full per-second rate). Paused and
    -- disabled channels are not read at all, nor is an unreachable one (see
    -- wa_channels.unreachable_since) until its next probe, which is one message; a channel's
    -- queue is read in due order (wa_messages_due) only until its budget is found: a long
    -- queue costs nothing per claim.
    SELECT pg_catalog.array_agg(d.id) INTO chosen
      FROM (SELECT m.id
              FROM @extschema@.wa_channels c
             CROSS JOIN LATERAL (
                    SELECT m.id, m.next_attempt_at
                      FROM @extschema@._wa_queue_heads(c.id) m
                     WHERE m.next_attempt_at <= pg_catalog.now()
                     ORDER BY m.next_attempt_at
                     -- (The channel's own rate too: the worker's budget is from before a change
                     -- of it. least() skips the NULL budget of a channel the worker has not seen.)
                     LIMIT least(max_messages, c.max_messages_per_second, (budgets ->> c.id::text)::integer,
                                 CASE WHEN c.unreachable_since IS NOT NULL THEN 1 END)
                   ) m
             WHERE c.enabled AND c.paused_at IS NULL AND (c.next_probe_at IS NULL OR c.next_probe_at <= pg_catalog.now())
             ORDER BY m.next_attempt_at
             LIMIT max_messages) d;
    -- By primary key: the claim must not become a join the planner could get wrong. (The
    -- status is compared as `status || ''` so that the planner cannot prove the partial index
    -- wa_messages_due applies: on statistics that say the queue is empty it read that whole
    -- index for every claim instead, 8,000 entries for 145 messages, measured on a full table.)
    RETURN QUERY
    UPDATE @extschema@.wa_messages m
       SET status = 'sending', attempts = m.attempts + 1, updated_at = pg_catalog.now()
      FROM @extschema@.wa_channels c, @extschema@.wa_channel_secrets s
     WHERE m.id = ANY (chosen) AND m.status || '' = 'queued' AND c.id = m.channel_id AND s.channel_id = c.id
    RETURNING m.id, m.channel_id, c.max_messages_per_second, m.attempts, c.phone_number_id,
              COALESCE(c.graph_api_version, default_version), s.access_token, m.payload::text, m.recipient, m.type,
              m.graph_endpoint, c.unreachable_since IS NOT NULL, COALESCE(m.expires_at <= pg_catalog.now(), false);
END
$$;

-- Meta refused the channel's access token: stop sending for it (its queue waits) until
-- wa_set_access_token() is called, instead of failing every queued message.
CREATE FUNCTION _wa_pause_channel(msg_id bigint, reason text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_channels c SET paused_at = pg_catalog.now(), paused_reason = reason
      FROM @extschema@.wa_messages m WHERE m.id = msg_id AND c.id = m.channel_id;
    -- The attempt was not the message's fault: it goes back to the queue unchanged.
    UPDATE @extschema@.wa_messages m SET status = 'queued', attempts = m.attempts - 1, updated_at = pg_catalog.now()
     WHERE m.id = msg_id AND m.status || '' = 'sending';
END;

-- The Graph API has answered nothing but transport errors and 5xx for this channel since
-- `since`: its queue waits, one message probing every `probe_in` seconds (see _wa_claim_due).
CREATE FUNCTION _wa_channel_unreachable(channel bigint, since timestamptz, probe_in double precision) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_channels c
       SET unreachable_since = COALESCE(c.unreachable_since, since),
           next_probe_at = pg_catalog.now() + pg_catalog.make_interval(secs => probe_in)
     WHERE c.id = channel;
END;

-- The Graph API answered again: the channel's whole queue is due at once, in queue order (each
-- customer's oldest message first), instead of each message waiting out its backoff.
CREATE FUNCTION _wa_channel_reachable(channel bigint) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE @extschema@.wa_channels c SET unreachable_since = NULL, next_probe_at = NULL
     WHERE c.id = channel AND c.unreachable_since IS NOT NULL;
    UPDATE @extschema@.wa_messages m SET next_attempt_at = pg_catalog.now()
     WHERE m.channel_id = channel AND m.status = 'queued' AND m.next_attempt_at > pg_catalog.now();
END;

-- Claimed messages past their expires_at fail instead of being sent late, with the reason.
CREATE FUNCTION _wa_expire(msg_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH expired AS (
        UPDATE @extschema@.wa_messages x
           SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL, error_code = NULL,
               error_title = 'expired at ' || x.expires_at::text || ' before it could be sent: not sent late (expires_at)',
               error_details = NULL, error_hint = NULL, updated_at = pg_catalog.now()
         WHERE x.id = ANY (msg_ids) AND x.status || '' = 'sending'
        RETURNING x.id, x.channel_id)
    SELECT pg_catalog.count(pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', e.id, 'channel_id', e.channel_id)::text))
      FROM (SELECT expired.id, expired.channel_id FROM expired ORDER BY expired.id) e
$$;

-- The rest of a customer's queue waits as long as its head (a retry, the pair rate): later
-- messages cannot be sent before it anyway, and left due they would be read by every claim.
CREATE FUNCTION _wa_hold_behind(channel bigint, p_recipient text, head bigint, until timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.wa_messages x SET next_attempt_at = until
     WHERE x.channel_id = channel AND x.recipient = p_recipient AND x.status = 'queued'
       AND x.id > head AND x.next_attempt_at < until;
END
$$;

-- A claimed message that must wait (Meta's pair rate: see the delivery worker) goes back to the
-- queue unsent, and so does the rest of that customer's queue: claims do not read it until then.
CREATE FUNCTION _wa_defer(msg_id bigint, delay_seconds double precision) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages;
    until timestamptz := pg_catalog.now() + pg_catalog.make_interval(secs => delay_seconds);
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'queued', attempts = x.attempts - 1, next_attempt_at = until, updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status || '' = 'sending'
    RETURNING * INTO m;
    IF FOUND THEN
        PERFORM @extschema@._wa_hold_behind(m.channel_id, m.recipient, m.id, until);
    END IF;
END
$$;

-- Seconds until the next queued message that could be claimed falls due (the oldest message of
-- each recipient, not behind one in flight, of a channel that sends) or the next scheduled one;
-- NULL when there is none. (Media downloads have their own: _wa_next_media_due_in.)
CREATE FUNCTION _wa_next_due_in() RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (Planned as a queue read: see sql/plans.sql.)
AS $$
DECLARE
    due timestamptz;
BEGIN
    SELECT least(
        -- (an unreachable channel's queue is due at its next probe at the soonest)
        (SELECT pg_catalog.min(greatest(h.next_attempt_at, c.next_probe_at))
           FROM @extschema@.wa_channels c
          CROSS JOIN LATERAL (
                SELECT m.next_attempt_at FROM @extschema@._wa_queue_heads(c.id) m
                 ORDER BY m.next_attempt_at
                 LIMIT 1) h
          WHERE c.enabled AND c.paused_at IS NULL),
        -- scheduled messages, released into the queue by the claim (wa_messages_scheduled)
        (SELECT pg_catalog.min(m.next_attempt_at) FROM @extschema@.wa_messages m WHERE m.status = 'scheduled'))
      INTO due;
    -- (greatest() ignores NULL: nothing due must stay NULL, not become 0.)
    RETURN CASE WHEN due IS NOT NULL THEN greatest(0, extract(epoch FROM due - pg_catalog.now()))::double precision END;
END
$$;

-- After a crash (or a shutdown) between claiming and recording, claimed messages go back to
-- the queue, but not at once: Meta may have accepted them, and then a status that carries the
-- message's outbox id (biz_opaque_callback_data) arrives and records the send instead (see
-- _wa_receive_statuses). Only what heard nothing for `resend_after` seconds is sent again
-- (whatsapp_channel.resend_interrupted_after; README, "Delivery guarantees"). The rest of each
-- customer's queue waits behind it, in order.
CREATE FUNCTION _wa_requeue_interrupted(resend_after double precision) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        UPDATE @extschema@.wa_messages m
           SET status = 'queued', updated_at = pg_catalog.now(),
               next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => resend_after)
         WHERE m.status = 'sending' RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM r
$$;

-- Records the sends Meta accepted: each message 'sending' -> 'sent' with its wamid, notified on
-- wa_status, and any statuses that arrived before the wamid was known applied. Set-based: the
-- delivery worker records a whole turn's accepted sends in one call (one statement each
-- instead of five per message); _wa_mark_sent is the same for one.
CREATE FUNCTION _wa_mark_sent_all(msg_ids bigint[], p_wamids text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Planned as a batch join: see sql/plans.sql.)
AS $$
DECLARE
    sent_channels bigint[];
    sent_wamids   text[];
BEGIN
    -- Serialises with _wa_receive_statuses for the same wamids, in the same (bytewise wamid)
    -- order, so the two never deadlock and no early status is missed by both.
    PERFORM pg_catalog.count(pg_catalog.pg_advisory_xact_lock(k.lock))
       FROM (SELECT @extschema@._wa_wamid_lock(x.channel_id, u.w) AS lock
               FROM unnest(msg_ids, p_wamids) AS u(id, w)
               JOIN @extschema@.wa_messages x ON x.id = u.id
              WHERE u.w IS NOT NULL
              ORDER BY u.w COLLATE "C", x.channel_id OFFSET 0) k;
    WITH sent AS (
        UPDATE @extschema@.wa_messages x
           SET status = 'sent', wamid = u.w, sent_at = pg_catalog.now(), next_attempt_at = NULL,
               error_code = NULL, error_title = NULL, error_details = NULL, error_hint = NULL,
               updated_at = pg_catalog.now()
          FROM unnest(msg_ids, p_wamids) AS u(id, w)
         WHERE x.id = u.id AND x.status || '' = 'sending'
        RETURNING x.id, x.channel_id, u.w
    ), notified AS (
        SELECT sent.channel_id, sent.w,
               pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', sent.id, 'channel_id', sent.channel_id)::text)
          FROM sent ORDER BY sent.id
    )
    -- Statuses that arrived before these wamids were known (usually none: one probe each).
    SELECT pg_catalog.array_agg(n.channel_id), pg_catalog.array_agg(n.w) INTO sent_channels, sent_wamids
      FROM notified n
     WHERE n.w IS NOT NULL
       AND EXISTS (SELECT 1 FROM @extschema@.wa_message_statuses h WHERE h.channel_id = n.channel_id AND h.wamid = n.w);
    IF sent_wamids IS NOT NULL THEN
        PERFORM @extschema@._wa_apply_statuses(sent_channels, sent_wamids);
    END IF;
END
$$;

-- Whether a customer of these messages (sends just recorded as accepted) has another message
-- queued, which heads their queue now. A delivery turn that records only accepted sends, with
-- no commit, retry or due time since its last claim, claims only if so: nothing else can have
-- made a message claimable (src/outbound/delivery.rs, `must_look`). At 200 sends a second half
-- of the turns are such turns, and the claim was most of a turn's cost. One probe of
-- wa_messages_outbox a message (_wa_queue_head).
CREATE FUNCTION _wa_queued_behind(msg_ids bigint[]) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (PL/pgSQL, not SQL, to keep its plan for the session; planned as a batch join: sql/plans.sql.)
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM unnest(msg_ids) AS u(id)
                     JOIN @extschema@.wa_messages x ON x.id = u.id
                    CROSS JOIN LATERAL @extschema@._wa_queue_head(x.channel_id, x.recipient) h
                    WHERE h.id IS NOT NULL);
END
$$;

CREATE FUNCTION _wa_mark_sent(msg_id bigint, p_wamid text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT @extschema@._wa_mark_sent_all(ARRAY[msg_id], ARRAY[p_wamid]);
END;

CREATE FUNCTION _wa_mark_failed(msg_id bigint, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    channel bigint;
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'failed', failed_at = pg_catalog.now(), next_attempt_at = NULL,
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status || '' = 'sending'
    RETURNING x.channel_id INTO channel;
    IF FOUND THEN
        PERFORM pg_catalog.pg_notify('wa_status', pg_catalog.json_build_object('id', msg_id, 'channel_id', channel)::text);
        -- Meta's word that the customer stopped marketing messages (sql/inbound_preferences.sql).
        IF p_code = 131050 THEN
            PERFORM @extschema@._wa_note_marketing_refusals(ARRAY[msg_id]);
        END IF;
    END IF;
END
$$;

CREATE FUNCTION _wa_mark_retry(msg_id bigint, delay_seconds double precision, p_code integer, p_title text, p_details text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m @extschema@.wa_messages;
BEGIN
    UPDATE @extschema@.wa_messages x
       SET status = 'queued', next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => delay_seconds),
           error_code = p_code, error_title = p_title, error_details = p_details,
           error_hint = @extschema@.wa_error_hint(p_code), updated_at = pg_catalog.now()
     WHERE x.id = msg_id AND x.status || '' = 'sending'
    RETURNING * INTO m;
    IF FOUND THEN
        PERFORM @extschema@._wa_hold_behind(m.channel_id, m.recipient, m.id, m.next_attempt_at);
    END IF;
END
$$;
