# Sourced by bench/scale.sh once the extension and the bench channel exist: the inbox roles the
# reads and the enqueue run as (SCALE_AS_ROLE, wa_bench_agent by default, and wa_bench_other),
# their channel grants where the build has them, and the second channel whose rows a policy
# has to keep out of wa_bench_agent's reads.

# A LOGIN role (trust over the unix socket, as for postgres), made idempotently (the cluster is
# new every run, but SCALE_KEEP=1 clusters get reused by hand), with SELECT on every table and
# view of the extension and EXECUTE on wa_send_text: the same grants on both builds that
# bench/alternate.sh compares (the README's "Roles" block names objects only the newer one
# has). Which rows the role reads is up to the build: all of them before channel grants, its
# channel's under row-level security.
make_inbox_role() { # role (a plain lower-case name, checked by scale.sh)
  sql "DO \$\$BEGIN CREATE ROLE $1 LOGIN; EXCEPTION WHEN duplicate_object THEN ALTER ROLE $1 LOGIN; END\$\$"
  sql "DO \$\$DECLARE r regclass; BEGIN
         FOR r IN SELECT d.objid::regclass FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
                   WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind IN ('r', 'v')
                     AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'whatsapp_channel') LOOP
           EXECUTE format('GRANT SELECT ON %s TO $1', r);
         END LOOP;
       END\$\$" >/dev/null || die "could not grant the extension's tables to $1"
  # Every wa_send_text there is: its arguments differ between the builds compared.
  sql "DO \$\$DECLARE f regprocedure; BEGIN
         FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.proname = 'wa_send_text' LOOP
           EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO $1', f);
         END LOOP;
       END\$\$" >/dev/null || die "could not grant wa_send_text to $1"
}

# Channel grants exist from the build that brings wa_grant_channel (and row-level security with
# it); an older build is measured without them, so one harness measures both sides of
# bench/alternate.sh. GRANTS records what was done, for the report.
HAS_CHANNEL_GRANTS=$(sql "SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'wa_grant_channel')")
GRANTS=()
grant_channel() { # channel, role: 'send' on the channel, if the build has channel grants
  if [ "$HAS_CHANNEL_GRANTS" != t ]; then
    GRANTS+=("$2 on $1: skipped (no wa_grant_channel in this build)")
    return 0
  fi
  printf '%s\n' "SELECT wa_grant_channel(:'channel', :'role', 'send');" \
    | "${PSQL[@]}" -v channel="$1" -v role="$2" -f - >/dev/null || die "wa_grant_channel('$1', '$2', 'send') failed"
  GRANTS+=("$2 on $1: wa_grant_channel('$1', '$2', 'send')")
}

# The bench's own helper tables (bench_scale_contacts, bench_plain_outbox) for (iv) as the
# role: not the extension's.
grant_helper() { # privilege ON object, ...
  [ -n "$AS_ROLE" ] || return 0
  local g
  for g in "$@"; do sql "GRANT $g TO $AS_ROLE"; done
}

# The second channel, its role and its share of the seed, through the same listener path as
# the seed (so scale is most of the data but not all). Its customers are other numbers than
# the seed's (--sender-offset), as another business's would be. Sets OTHER_ID and OTHER_SEED.
OTHER_SEED=
seed_other_channel() {
  local messages senders
  sql "SELECT wa_add_channel('$OTHER_CHANNEL', '106540352242923', 'EAAGscaleotheraccesstoken00000', 'fedcba9876543210fedcba9876543210', 'scale_other_verify_token')" >/dev/null
  OTHER_ID=$(sql "SELECT id FROM wa_channels WHERE name = '$OTHER_CHANNEL'")
  grant_channel "$OTHER_CHANNEL" "$OTHER_ROLE"
  messages=$(awk -v n="$SEED_MESSAGES" -v s="$OTHER_SHARE" 'BEGIN { printf "%d", n * s }')
  senders=$(awk -v n="$SEED_SENDERS" -v s="$OTHER_SHARE" 'BEGIN { k = int(n * s); print (k < 1) ? 1 : k }')
  [ "$messages" -gt 0 ] || return 0
  # The listener may need a moment to serve the new channel's URL.
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$SCALE_LISTEN/webhook/$OTHER_CHANNEL" || true)" != 404 ] && break
    sleep 0.1
  done
  STEP="seed of $OTHER_CHANNEL"
  progress "=== seed of $OTHER_CHANNEL: $(fmt "$messages") messages from $(fmt "$senders") customers of its own"
  OTHER_SEED=$("$WA_SIM" load --dsn "$DSN" --channel "$OTHER_CHANNEL" --concurrency "$SEED_CONCURRENCY" --batch "$SEED_BATCH" \
    --senders "$senders" --sender-offset "$SEED_SENDERS" --new-share 0 --messages "$messages" --seconds "$SEED_MAX_SECONDS" \
    --progress 10) || die "the seed of $OTHER_CHANNEL failed"
  OTHER_SEED=${OTHER_SEED#wa-sim load: }
  LOAD_LINES+=("seed $OTHER_CHANNEL: $OTHER_SEED")
  progress "  $OTHER_SEED"
}

# Conversations per channel as the owner sees them and as $READ_USER does, "channel|owner|role"
# lines: where row-level security filters, the role's column says so.
visible_conversations() {
  local owner role
  owner=$(sql "SELECT channel, count(*) FROM wa_conversations GROUP BY 1 ORDER BY 1")
  role=$(psql_as "$READ_USER" -c "SELECT channel, count(*) FROM wa_conversations GROUP BY 1 ORDER BY 1")
  awk -F'|' 'NR == FNR { if ($1 != "") seen[$1] = $2; next } $1 != "" { print $1 "|" $2 "|" ($1 in seen ? seen[$1] : 0) }' \
    <(echo "$role") <(echo "$owner")
}
