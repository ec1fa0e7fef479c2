#!/usr/bin/env bash
# Walks the tour that `scripts/run.sh` prints, without a person: a customer writes in (wa-sim
# trigger), the message is a row, a photo is downloaded, the reply goes out and its status
# comes back as 'read'.
# Run it after scripts/run.sh; it exits non-zero if any step does not happen in time.
set -euo pipefail
cd "$(dirname "$0")/.."
WA_HOME=${WA_HOME:-/var/tmp/whatsapp_channel}
WA_PG_PORT=${WA_PG_PORT:-5499}
export WA_DSN="host=$WA_HOME port=$WA_PG_PORT user=postgres dbname=postgres"
PSQL=(psql -X -q -At -h "$WA_HOME" -p "$WA_PG_PORT" -U postgres -d postgres)
wamid="wamid.democheck.$(date +%s%N)"

# 1. A customer writes in.
target/release/wa-sim trigger text --channel demo --from 16505551234 --name "Sheena Nelson" \
  --text "Does it come in another color?" --wamid "$wamid"
# 2. The message is a row (the listener answered 200 only after committing it).
body=$("${PSQL[@]}" -c "SELECT body FROM wa_messages WHERE wamid = '$wamid'")
[ "$body" = "Does it come in another color?" ] || { echo "demo-check: the message is not in wa_messages"; exit 1; }
echo "demo-check: inbound message stored"
# 3. A photo: wa-sim serves the media it sends, so the download ends with the picture.
target/release/wa-sim trigger image --channel demo --from 16505551234 --name "Sheena Nelson" --text "this one?" \
  --wamid "$wamid.photo"
for _ in $(seq 100); do
  media=$("${PSQL[@]}" -c "SELECT j.status FROM wa_media j JOIN wa_messages m ON m.id = j.message_id WHERE m.wamid = '$wamid.photo'")
  [ "$media" = done ] && break
  sleep 0.1
done
[ "$media" = done ] || { echo "demo-check: the photo's download ended as '$media', not 'done'"; exit 1; }
echo "demo-check: photo downloaded"
# 4. The reply is sent, and wa-sim's status webhooks take it to 'read' (within ~2 s).
id=$("${PSQL[@]}" -c "SELECT wa_send_text('demo', '16505551234', 'Yes: red, blue and green!')")
for _ in $(seq 100); do
  status=$("${PSQL[@]}" -c "SELECT status FROM wa_messages WHERE id = $id")
  [ "$status" = read ] && { echo "demo-check: reply $id sent, delivered and read"; exit 0; }
  sleep 0.1
done
echo "demo-check: reply $id ended as '$status', not 'read'"; exit 1
