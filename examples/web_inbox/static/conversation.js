// The web inbox: the open conversation, its messages, statuses, reactions and quotes (after
// app.js).

// ---- the open conversation --------------------------------------------------------------------

// A click on the conversation being opened, or already open, keeps it as it is (and the draft
// typed meanwhile).
let opening = null;

async function openConversation(conversationId) {
  if (opening === conversationId || (opening === null && state.open && state.open.row.conversation_id === conversationId)) return;
  opening = conversationId;
  try {
    await readConversation(conversationId);
  } finally {
    if (opening === conversationId) opening = null;
  }
}

async function readConversation(conversationId) {
  const row = await api(`/api/conversations/${conversationId}`).catch((e) => { showProblem(e); return null; });
  if (!row) return;
  state.open = { row, messages: new Map(), hasOlder: false };
  state.replyTo = null;
  $("#replying-to").hidden = true;
  $("#reply-text").value = ""; // a draft belongs to the conversation it was written in
  hideComposeError();
  $("#nothing-open").hidden = true;
  $("#conversation").hidden = false;
  const { messages } = await api(`/api/conversations/${conversationId}/messages?before=9223372036854775807&limit=${PAGE_SIZE}`);
  if (!state.open || state.open.row.conversation_id !== conversationId) return; // another was opened meanwhile
  for (const m of messages) state.open.messages.set(m.id, m);
  state.open.hasOlder = messages.length === PAGE_SIZE;
  renderConversation(true);
  renderConversations();
  refreshCalls().catch(showProblem);
  if (row.unread_count > 0) await markRead();
}

function lastId() {
  let max = 0;
  for (const id of state.open.messages.keys()) max = Math.max(max, id);
  return max;
}

function oldestId() {
  let min = Infinity;
  for (const id of state.open.messages.keys()) min = Math.min(min, id);
  return min === Infinity ? 0 : min;
}

// Reads what is new in the open conversation: messages after the last id it has, the targets
// of new reactions, edits and deletions, and the conversation's row (its 24-hour window).
const refreshOpen = serially(async () => { await readOpenFrom(lastId(), false); });

// After a lost connection: read everything shown again from its oldest id, so that statuses,
// edits and reactions that changed meanwhile are current too, and everything after it is added.
const resyncOpen = serially(async () => { await readOpenFrom(oldestId() - 1, true); });

async function readOpenFrom(afterId, everything) {
  if (!state.open) return;
  const open = state.open;
  const id = open.row.conversation_id;
  let after = afterId, fresh = [];
  for (;;) {
    const { messages } = await api(`/api/conversations/${id}/messages?after=${after}&limit=${PAGE_SIZE}`);
    if (state.open !== open) return;
    fresh.push(...messages);
    if (messages.length < PAGE_SIZE) break;
    after = messages[messages.length - 1].id;
  }
  const newInbound = fresh.some((m) => m.direction === "inbound" && !open.messages.has(m.id));
  for (const m of fresh) open.messages.set(m.id, m);
  const targets = new Set();
  if (!everything) {
    const byWamid = wamidIndex();
    for (const m of fresh) {
      const target = byWamid.get(m.reaction_to_wamid || m.original_wamid);
      if (TYPES_THAT_CHANGE_OTHERS.has(m.type) && target) targets.add(target.id);
    }
  }
  if (targets.size) await refreshMessages([...targets]);
  open.row = await api(`/api/conversations/${id}`);
  renderConversation(false);
  if (newInbound) await markRead();
}

async function refreshMessages(ids) {
  if (!state.open || ids.length === 0) return;
  const open = state.open;
  const { messages } = await api(`/api/conversations/${open.row.conversation_id}/messages?ids=${ids.join(",")}`);
  if (state.open !== open) return;
  for (const m of messages) {
    // (Two reads of one message can answer out of order: the row changed last wins, and at the
    // same change a status never moves back. A retried message does move back, failed -> queued,
    // with a newer updated_at.)
    const had = open.messages.get(m.id);
    if (had && newerRead(had, m)) continue;
    open.messages.set(m.id, m);
  }
  renderConversation(false);
}

// Whether the read `a` of a message is newer than the read `b` of the same message.
function newerRead(a, b) {
  const [ta, tb] = [Date.parse(a.updated_at), Date.parse(b.updated_at)];
  if (ta !== tb) return ta > tb;
  return (STATUS_RANK[a.status] ?? -1) > (STATUS_RANK[b.status] ?? -1);
}

async function loadOlderMessages() {
  const open = state.open;
  const { messages } = await api(`/api/conversations/${open.row.conversation_id}/messages?before=${oldestId()}&limit=${PAGE_SIZE}`);
  if (state.open !== open) return;
  for (const m of messages) open.messages.set(m.id, m);
  open.hasOlder = messages.length === PAGE_SIZE;
  renderConversation(false);
}

function wamidIndex() {
  const byWamid = new Map();
  for (const m of state.open.messages.values()) if (m.wamid) byWamid.set(m.wamid, m);
  return byWamid;
}

async function markRead() {
  try {
    await api(`/api/conversations/${state.open.row.conversation_id}/read`, { json: {} });
  } catch (e) {
    showComposeError(e);
  }
  scheduleConversationsRefresh();
}

// Messages a notification named, read again (their status, a failure's error and hint, media
// that arrived): one read at a time, for all the ids named meanwhile.
const namedIds = new Set();
const refreshNamed = serially(async () => {
  const ids = [...namedIds];
  namedIds.clear();
  await refreshMessages(ids);
});
function refreshLater(id) {
  namedIds.add(id);
  refreshNamed();
}

// A status notification names the message ({"id", "channel_id"}); its row, read again, says
// where it is now (a status only moves forward, so the newest read is the truth).
function applyStatus(note) {
  if (!state.open) return;
  if (state.open.messages.has(note.id)) refreshLater(note.id);
  // Not read yet: one sent elsewhere (psql, another agent), or this page's own reply whose
  // status came before the page read it back. What is new is read first (by id, so nothing is
  // skipped), then this row again: the first read may have found it a status earlier.
  else if (note.id > lastId()) refreshOpen().then(() => refreshLater(note.id));
}

function renderConversation(scrollToEnd) {
  const open = state.open;
  const row = open.row;
  $("#conversation-name").textContent = contactName(row);
  $("#conversation-number").textContent = row.group_id ? "group" : row.wa_id ? "+" + row.wa_id : row.user_id;
  const windowState = $("#window-state");
  windowState.textContent = row.window_open
    ? `window open until ${time(row.window_closes_at)}`
    : (row.window_closes_at ? `window closed at ${time(row.window_closes_at)}` : "window closed: the customer never wrote");
  windowState.className = row.window_open ? "open" : "closed";
  // A customer who stopped marketing messages: wa_send_template refuses marketing templates.
  const marketing = $("#marketing-state");
  marketing.hidden = !row.marketing_opt_out_at;
  marketing.textContent = row.marketing_opt_out_at
    ? `stopped marketing messages (since ${time(row.marketing_opt_out_at)}): marketing templates are refused` : "";

  // Blocking (a customer only): the state is what Meta confirmed (wa_contacts.blocked_at).
  const blocked = $("#blocked-state");
  blocked.hidden = !row.blocked_at;
  blocked.textContent = row.blocked_at ? `blocked since ${time(row.blocked_at)}` : "";
  const toggle = $("#block-toggle");
  toggle.hidden = !!row.group_id;
  toggle.textContent = row.blocked_at ? "Unblock" : "Block";

  const scroller = $("#messages-scroll");
  const atEnd = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const byWamid = wamidIndex();
  const list = [...open.messages.values()].sort((a, b) => a.id - b.id);
  const nodes = [];
  const rendered = new Map();
  for (const m of list) {
    if (TYPES_THAT_CHANGE_OTHERS.has(m.type)) {
      // Shown on the message it changes; only said on its own when that one is not loaded.
      if (!byWamid.has(m.reaction_to_wamid || m.original_wamid)) nodes.push(renderChangeOfUnloaded(m));
      continue;
    }
    // A message whose row did not change keeps its element (an image is not loaded again).
    const key = JSON.stringify(m);
    const before = open.rendered && open.rendered.get(m.id);
    const node = before && before.key === key ? before.node : renderMessage(m);
    rendered.set(m.id, { key, node });
    nodes.push(node);
  }
  open.rendered = rendered;
  $("#messages").replaceChildren(...nodes);
  $("#older-messages").hidden = !open.hasOlder;
  renderComposer();
  if (scrollToEnd || atEnd) scroller.scrollTop = scroller.scrollHeight;
}

function renderChangeOfUnloaded(m) {
  const who = m.direction === "inbound" ? "The customer" : "You";
  const what = m.type === "reaction" ? (m.reaction_emoji ? `reacted ${m.reaction_emoji} to` : "removed a reaction from")
    : m.type === "edit" ? "edited" : "deleted";
  return el("div", { class: "change", "data-id": m.id, "data-type": m.type }, `${who} ${what} an earlier message`);
}

function renderMessage(m) {
  const revoked = Boolean(m.revoked_at);
  return el("div", {
    class: `message ${m.direction}` + (revoked ? " deleted" : ""),
    "data-id": m.id, "data-type": m.type, "data-wamid": m.wamid, "data-status": m.status,
  },
    m.reply_to_wamid ? renderQuote(m) : null,
    revoked ? el("div", { class: "deleted-note" }, "This message was deleted") : renderContent(m),
    el("div", { class: "meta" },
      m.source === "business_app" ? el("span", { class: "source" }, "from the Business app") : null,
      el("span", { class: "time" }, time(m.sent_at || m.created_at)),
      m.edited_at && !revoked ? el("span", { class: "edited", title: `edited ${time(m.edited_at)}` }, "edited") : null,
      m.direction === "outbound" ? renderTick(m) : null,
      m.wamid && !revoked ? el("button", { type: "button", class: "reply-to", onclick: () => startReplyTo(m) }, "Reply") : null,
      m.status === "queued" || m.status === "scheduled"
        ? el("button", { type: "button", class: "cancel-message", onclick: () => messageAction(m, "cancel") }, "Cancel") : null,
      m.status === "failed"
        ? el("button", { type: "button", class: "retry-message", onclick: () => messageAction(m, "retry") }, "Retry") : null),
    m.send_at ? el("div", { class: "scheduled-for" }, `scheduled for ${time(m.send_at)}`) : null,
    renderReactions(m),
    m.status === "failed" ? el("div", { class: "error send-failure" },
      el("div", { class: "error-message" }, [m.error_code, m.error_title, m.error_details].filter(Boolean).join(" · ")),
      m.error_hint ? el("div", { class: "error-hint" }, m.error_hint) : null) : null);
}

function renderQuote(m) {
  const text = m.quoted_id ? describe(m.quoted_type, m.quoted_body) : "a message not in this inbox";
  const who = m.quoted_direction === "outbound" ? "You" : m.quoted_direction === "inbound" ? "Customer" : "";
  return el("div", { class: "quote", "data-quoted-id": m.quoted_id }, who ? el("b", {}, who + ": ") : null, text);
}

function renderContent(m) {
  const text = m.edited_body ?? m.body;
  const caption = text ? el("div", { class: "body" }, text) : null;
  if (m.has_media && (m.type === "image" || m.type === "sticker")) {
    const img = el("img", { class: "media", src: `/media/${m.id}`, alt: `${m.type} from the customer` });
    img.addEventListener("error", () => img.replaceWith(el("div", { class: "media-pending" }, `${m.type}: not downloaded (yet)`)));
    return el("div", { class: "content" }, img, caption);
  }
  if (m.has_media) {
    const label = m.media_filename || `${m.voice ? "voice note" : m.type} (${m.media_mime_type || "file"})`;
    return el("div", { class: "content" },
      el("a", { class: "download", href: `/media/${m.id}?download=1`, download: m.media_filename || "" }, "⬇ " + label), caption);
  }
  if (m.type === "location") {
    const where = [m.location_name, m.location_address].filter(Boolean).join(", ");
    return el("div", { class: "content body" }, `📍 ${where} (${m.latitude}, ${m.longitude})`);
  }
  if (m.flow_response) {
    return el("div", { class: "content" }, el("div", { class: "body" }, text), renderAnswers(m.flow_response));
  }
  return el("div", { class: "content" }, el("div", { class: "body" }, describe(m.type, text)));
}

// A Flow's answers, an address or a call permission, as a small table: one row per answer (an
// address's `values` one level down), without the flow_token, which is the business's own id.
function renderAnswers(response) {
  const answers = response.values && typeof response.values === "object" ? response.values : response;
  const rows = Object.entries(answers)
    .filter(([key, value]) => key !== "flow_token" && value !== null && value !== "")
    .map(([key, value]) => el("tr", {},
      el("th", {}, key.replaceAll("_", " ")),
      el("td", {}, typeof value === "object" ? JSON.stringify(value) : String(value))));
  return el("table", { class: "flow-answers" }, el("tbody", {}, ...rows));
}

function renderTick(m) {
  const seen = state.statusesShown.get(m.id) || [];
  if (seen[seen.length - 1] !== m.status) seen.push(m.status);
  state.statusesShown.set(m.id, seen);
  return el("span", {
    class: `tick ${m.status}`, "data-status": m.status, "data-status-seen": seen.join(" "), title: m.status,
  }, TICKS[m.status] || m.status, el("span", { class: "tick-label" }, m.status));
}

function renderReactions(m) {
  const shown = Object.entries(m.reactions || {}).filter(([, emoji]) => emoji);
  if (shown.length === 0) return null;
  return el("div", { class: "reactions" },
    shown.map(([direction, emoji]) => el("span", { class: `reaction ${direction}`, title: direction === "inbound" ? "the customer" : "you" }, emoji)));
}

// ---- blocking and ringing calls ---------------------------------------------------------------

// Block or unblock the open conversation's customer: an action the worker performs after the
// commit; the page reads the row again when wa_action says it ended.
async function toggleBlock() {
  if (!state.open) return;
  const button = $("#block-toggle");
  button.disabled = true;
  try {
    await api(`/api/conversations/${state.open.row.conversation_id}/block`, { json: { blocked: !state.open.row.blocked_at } });
  } catch (e) {
    showComposeError(e);
  } finally {
    button.disabled = false;
  }
}

// The open conversation's ringing calls, each with Accept and Reject. Signalling only: Accept
// answers the call's SDP offer with this browser's WebRTC answer (no media is played here).
const refreshCalls = serially(async () => {
  const banner = $("#call-banner");
  if (!state.open || state.open.row.group_id) { banner.hidden = true; return; }
  const open = state.open;
  const calls = await api(`/api/conversations/${open.row.conversation_id}/calls`);
  if (state.open !== open) return;
  banner.replaceChildren(...calls.map((c) => {
    const item = document.createElement("div");
    item.className = "ringing-call";
    item.dataset.callId = c.call_id;
    const text = document.createElement("span");
    text.textContent = `ringing since ${time(c.rang_at)}`;
    const accept = document.createElement("button");
    accept.className = "call-accept";
    accept.textContent = "Accept";
    accept.disabled = !c.offer_sdp;
    accept.addEventListener("click", () => answerCall(c, "accept"));
    const reject = document.createElement("button");
    reject.className = "call-reject";
    reject.textContent = "Reject";
    reject.addEventListener("click", () => answerCall(c, "reject"));
    item.append(text, " ", accept, " ", reject);
    return item;
  }));
  banner.hidden = calls.length === 0;
});

async function sdpAnswerTo(offer) {
  const pc = new RTCPeerConnection();
  await pc.setRemoteDescription({ type: "offer", sdp: offer });
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  state.callConnection = pc; // kept for the call's life (the media would flow through it)
  return answer.sdp;
}

async function answerCall(c, action) {
  if (!state.open) return;
  try {
    const body = action === "accept" ? { action, sdp: await sdpAnswerTo(c.offer_sdp) } : { action };
    await api(`/api/conversations/${state.open.row.conversation_id}/calls/${encodeURIComponent(c.call_id)}`, { json: body });
    const item = $("#call-banner").querySelector(`[data-call-id="${CSS.escape(c.call_id)}"]`);
    if (item) item.dataset.answered = action;
  } catch (e) {
    showComposeError(e);
  }
}
