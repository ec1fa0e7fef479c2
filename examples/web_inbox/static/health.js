// The web inbox: channel health, in the words of the seed's "Common issues" (after app.js).

// ---- channel health: the seed's "Common issues" -----------------------------------------------

function later(a, b) { return a && (!b || a > b); }

function healthRows(h) {
  const counts = h.counts || {};
  const rows = [];
  rows.push(["verification", "Verification fails during webhook setup",
    later(h.last_verify_token_mismatch_at, h.last_verified_handshake_at)
      ? ["problem", `a verify-token mismatch at ${time(h.last_verify_token_mismatch_at)}: paste the channel's verify token in Meta's webhook settings (GET answered 403)`]
      : h.last_verified_handshake_at ? ["ok", `verified by Meta at ${time(h.last_verified_handshake_at)}`]
      : ["neutral", "no handshake seen yet: Verify and Save in Meta's webhook settings"]]);
  rows.push(["signature", "Signature mismatch error in logs",
    h.last_signature_failure_at
      ? [later(h.last_signature_failure_at, h.last_verified_post_at) ? "problem" : "warning",
         `${counts.signature_mismatch || 1} POST(s) refused with 401 Signature mismatch, the last at ${time(h.last_signature_failure_at)}: ${h.last_signature_failure_cause || ""}`]
      : ["ok", "no badly signed POST"]]);
  rows.push(["arriving", "Messages not arriving",
    h.last_unrouted_at && later(h.last_unrouted_at, h.last_verified_post_at)
      ? ["problem", `a POST for phone number id ${h.last_unrouted_phone_number_id} reached no channel at ${time(h.last_unrouted_at)}`]
      : h.last_verified_post_at ? ["ok", `last signed POST stored at ${time(h.last_verified_post_at)}`]
      : ["neutral", "no POST yet: subscribe to the messages webhook field"]]);
  rows.push(["phone", "Invalid phone number when sending",
    ["neutral", "refused at once by wa_send_text; the reply box shows the extension's reason"]]);
  const devMode = h.last_send_failure_hint && /development mode/i.test(h.last_send_failure_hint);
  rows.push(["dev_mode", "App in Development mode error",
    devMode ? ["problem", `${time(h.last_send_failure_at)}: ${h.last_send_failure_hint}`]
      : ["ok", "no send refused for development mode"]]);
  // What Meta last said about the account (a ban, restriction, violation, offboarding or review
  // decision): a problem while it stops the queue, else a warning to read.
  rows.push(["account", "Account (Meta)",
    h.account_event ? [h.outbox_paused_at ? "problem" : "warning", `${time(h.account_event_at)}: ${h.account_event}`]
      : ["ok", "no ban, restriction, violation or review from Meta"]]);
  rows.push(["outbox", "Outbox",
    h.outbox_paused_at ? ["problem", `paused since ${time(h.outbox_paused_at)}: ${h.outbox_paused_reason}`]
      : h.last_send_failure_at && !devMode ? ["warning", `${h.outbox_queued} queued; last send failure at ${time(h.last_send_failure_at)}: ${h.last_send_failure_hint || ""}`]
      : ["ok", `${h.outbox_queued} queued`]]);
  return rows;
}

function renderHealth() {
  const h = state.health.find((row) => row.channel_id === state.channelId);
  const body = $("#health tbody");
  if (!h) { body.replaceChildren(); return; }
  body.replaceChildren(...healthRows(h).map(([key, symptom, [level, text]]) =>
    el("tr", { "data-issue": key, class: level }, el("td", { class: "symptom" }, symptom), el("td", { class: "state" }, text))));
}

const refreshHealth = serially(async () => {
  state.health = await api("/api/health");
  renderHealth();
});
