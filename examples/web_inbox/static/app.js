// The web inbox's page. Everything it shows comes from the JSON API over whatsapp_channel's
// views; notifications (Server-Sent Events) only say "look at row N", and the page reads rows by
// id: after a lost connection it catches up from the ids it has, so it misses nothing.
// Message text is the customer's: it is only ever put on the page as text (textContent), never
// as HTML.
"use strict";

const PAGE_SIZE = 50;
const TYPES_THAT_CHANGE_OTHERS = new Set(["reaction", "edit", "revoke"]);
const STATUS_RANK = { queued: 0, sending: 0, sent: 1, delivered: 2, read: 3, played: 4, failed: 100 };
const TICKS = { queued: "🕓", sending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", played: "✓✓", failed: "⚠" };

const state = {
  channelId: null,
  conversations: new Map(), // conversation_id -> row of wa_conversations
  moreConversations: false,
  open: null,               // the open conversation: {row, messages: Map id -> row, hasOlder}
  replyTo: null,            // {wamid, text} of the message a reply quotes
  templates: [],
  templatesError: null,
  health: [],
  databaseUp: false,
  // Every status each outbound message was shown with, in order (the tick's data-status-seen).
  statusesShown: new Map(),
};

// ---- small helpers ---------------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

// An element with attributes and children; strings become text nodes, never HTML.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.hint = body.hint || null;
  }
}

async function api(path, options = {}) {
  const init = { headers: {}, ...options };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { error: `the web inbox is unreachable (${e.message})` });
  }
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = { error: text || `HTTP ${response.status}` }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// Runs fn one at a time: a call while it runs makes it run once more afterwards, so an event
// that arrives during a fetch is never lost and fetches never overlap.
function serially(fn) {
  let running = null, again = false;
  return async function run() {
    if (running) { again = true; return running; }
    running = (async () => {
      do {
        again = false;
        try { await fn(); } catch (e) { showProblem(e); }
      } while (again);
    })();
    try { await running; } finally { running = null; }
  };
}

function showProblem(e) {
  const box = $("#list-error");
  box.textContent = e.message;
  box.hidden = false;
}

function clearProblem() { $("#list-error").hidden = true; }

function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function contactName(row) {
  if (row.group_id) return row.group_subject || "Group";
  return row.saved_name || row.profile_name || row.username || (row.wa_id ? "+" + row.wa_id : row.user_id);
}

// A message in one line, for the list's preview and quotes.
function describe(type, body) {
  if (type === "revoke") return "deleted a message";
  if (type === "reaction") return body ? `reacted ${body}` : "removed a reaction";
  if (type === "edit") return `edited: ${body || ""}`;
  if (type === "template") return `template: ${body}`;
  if (body) return body;
  return `<${type}>`;
}

// ---- conversations list -----------------------------------------------------------------------

function sortedConversations() {
  return [...state.conversations.values()].sort((a, b) =>
    (b.last_message_at || "").localeCompare(a.last_message_at || "") || b.conversation_id - a.conversation_id);
}

async function fetchConversations(before) {
  const params = new URLSearchParams({ channel_id: state.channelId, limit: PAGE_SIZE });
  if (before) {
    params.set("before_at", before.last_message_at);
    params.set("before_id", before.conversation_id);
  }
  const rows = await api(`/api/conversations?${params}`);
  for (const row of rows) state.conversations.set(row.conversation_id, row);
  return rows;
}

// The newest page again: a conversation only ever moves up (a new message), so the first page
// holds every row that changed; older pages stay as they were loaded.
const refreshConversations = serially(async () => {
  if (state.channelId === null) return;
  const rows = await fetchConversations(null);
  if (state.conversations.size <= rows.length) state.moreConversations = rows.length === PAGE_SIZE;
  clearProblem();
  renderConversations();
});

let listTimer = null;
function scheduleConversationsRefresh() {
  clearTimeout(listTimer);
  listTimer = setTimeout(refreshConversations, 100); // one refresh for a burst of events
}

async function loadOlderConversations() {
  const list = sortedConversations();
  const rows = await fetchConversations(list[list.length - 1]);
  state.moreConversations = rows.length === PAGE_SIZE;
  renderConversations();
}

function renderConversations() {
  const openId = state.open && state.open.row.conversation_id;
  const items = sortedConversations().map((row) => {
    const who = row.last_direction === "outbound" ? "You: " : "";
    return el("li", {
      class: "conversation" + (row.conversation_id === openId ? " open" : "") + (row.unread_count > 0 ? " has-unread" : ""),
      "data-conversation-id": row.conversation_id,
      "data-wa-id": row.wa_id,
      "data-group-id": row.group_id,
      onclick: () => openConversation(row.conversation_id),
    },
      el("div", { class: "line" },
        el("span", { class: "name" }, contactName(row)),
        el("span", { class: "time" }, time(row.last_message_at))),
      el("div", { class: "line" },
        el("span", { class: "preview" }, who + describe(row.last_type, row.last_body)),
        row.unread_count > 0 ? el("span", { class: "unread", title: "unread messages" }, row.unread_count) : null));
  });
  $("#conversations").replaceChildren(...items);
  $("#more-conversations").hidden = !state.moreConversations;
}

// ---- the open conversation --------------------------------------------------------------------

async function openConversation(conversationId) {
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
  for (const m of messages) open.messages.set(m.id, m);
  renderConversation(false);
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

// A wa_status notification: the tick moves on at once (never back: statuses can arrive out of
// order); a failure is read again for Meta's error and the extension's hint.
function applyStatus(note) {
  if (!state.open) return;
  const m = state.open.messages.get(note.id);
  if (!m) {
    if (note.id > lastId()) refreshOpen(); // an outbound message sent elsewhere (psql, another agent)
    return;
  }
  if (note.status === "failed") { refreshMessages([m.id]); return; }
  if (m.status !== "failed" && (STATUS_RANK[note.status] ?? -1) > (STATUS_RANK[m.status] ?? -1)) {
    m.status = note.status;
    renderConversation(false);
  }
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
      m.wamid && !revoked ? el("button", { type: "button", class: "reply-to", onclick: () => startReplyTo(m) }, "Reply") : null),
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
  return el("div", { class: "content" }, el("div", { class: "body" }, describe(m.type, text)));
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

// ---- composing --------------------------------------------------------------------------------

function startReplyTo(m) {
  state.replyTo = { wamid: m.wamid, text: describe(m.type, m.edited_body ?? m.body) };
  const box = $("#replying-to");
  box.querySelector(".text").textContent = `Replying to: ${state.replyTo.text}`;
  box.hidden = false;
  $("#reply-text").focus();
}

function showComposeError(e) {
  const box = $("#compose-error");
  box.querySelector(".error-message").textContent = e.message;
  box.querySelector(".error-hint").textContent = e.hint ? `Hint: ${e.hint}` : "";
  box.hidden = false;
}

function hideComposeError() { $("#compose-error").hidden = true; }

async function sendReply(event) {
  event.preventDefault();
  const text = $("#reply-text");
  try {
    await api(`/api/conversations/${state.open.row.conversation_id}/text`,
      { json: { body: text.value, reply_to: state.replyTo && state.replyTo.wamid } });
    text.value = "";
    state.replyTo = null;
    $("#replying-to").hidden = true;
    hideComposeError();
  } catch (e) {
    showComposeError(e);
    return;
  }
  await refreshOpen();
  scheduleConversationsRefresh();
}

// {{1}} or {{first_name}} in a template's body: its parameters.
function templateParameters(template) {
  const body = (template.components || []).find((c) => (c.type || "").toUpperCase() === "BODY");
  const text = body ? body.text || "" : "";
  const names = [...new Set([...text.matchAll(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g)].map((x) => x[1]))];
  return { text, names, positional: names.every((n) => /^\d+$/.test(n)) };
}

// A template picker (the conversation's, and the one for a new number): a choice of the
// channel's templates, the chosen one's body and a field for each of its parameters.
function selectedTemplate(picker) {
  const [name, language] = (picker.querySelector(".template-select").value || "").split("\u0000");
  return state.templates.find((t) => t.name === name && t.language === language);
}

function renderTemplatePicker(picker) {
  const select = picker.querySelector(".template-select");
  const before = select.value;
  const options = state.templates.map((t) => el("option", {
    value: t.name + "\u0000" + t.language, disabled: t.status !== "APPROVED",
  }, `${t.name} (${t.language})${t.status === "APPROVED" ? "" : " — " + t.status}`));
  if (state.templatesError) options.splice(0, options.length, el("option", { value: "" }, `cannot read templates: ${state.templatesError}`));
  else if (options.length === 0) options.push(el("option", { value: "" }, "no templates: run wa_sync_templates() for this channel"));
  select.replaceChildren(...options);
  if (before) select.value = before;
  if (!select.value || select.selectedOptions[0]?.disabled) {
    const firstApproved = state.templates.find((t) => t.status === "APPROVED");
    if (firstApproved) select.value = firstApproved.name + "\u0000" + firstApproved.language;
  }
  renderTemplateParameters(picker);
}

function renderTemplateParameters(picker) {
  const template = selectedTemplate(picker);
  const { text, names } = template ? templateParameters(template) : { text: "", names: [] };
  picker.querySelector(".template-body").textContent = text;
  const container = picker.querySelector(".template-parameters");
  if (container.dataset.for === (template ? template.name + template.language : "")) return; // keep what was typed
  container.dataset.for = template ? template.name + template.language : "";
  container.replaceChildren(...names.map((n) =>
    el("label", {}, `{{${n}}} `, el("input", { type: "text", "data-parameter": n }))));
}

// The chosen template and its parameters as the API takes them, or null when none is chosen.
function templateToSend(picker) {
  const template = selectedTemplate(picker);
  if (!template) return null;
  const { names, positional } = templateParameters(template);
  const values = Object.fromEntries([...picker.querySelectorAll(".template-parameters input")].map((i) => [i.dataset.parameter, i.value]));
  // An empty field is a parameter not given: the extension then says how many the template needs.
  const parameters = positional ? names.map((n) => values[n]).filter((v) => v !== "")
    : Object.fromEntries(Object.entries(values).filter(([, v]) => v !== ""));
  return { name: template.name, language: template.language, parameters };
}

function renderComposer() {
  const picker = $("#template-picker");
  picker.hidden = state.open.row.window_open;
  if (!picker.hidden) renderTemplatePicker(picker);
}

async function sendTemplate() {
  const chosen = templateToSend($("#template-picker"));
  if (!chosen) return;
  try {
    await api(`/api/conversations/${state.open.row.conversation_id}/template`, { json: chosen });
    hideComposeError();
  } catch (e) {
    showComposeError(e);
    return;
  }
  await refreshOpen();
  scheduleConversationsRefresh();
}

// A first message to a number that never wrote: only a template may reach it. It becomes a
// conversation when the customer answers.
async function sendToNewNumber(event) {
  event.preventDefault();
  const form = $("#new-conversation");
  const error = form.querySelector(".error");
  const result = form.querySelector(".result");
  const chosen = templateToSend(form);
  result.textContent = "";
  if (!chosen) return;
  try {
    const { id } = await api(`/api/channels/${state.channelId}/template`,
      { json: { ...chosen, recipient: $("#new-number").value } });
    error.hidden = true;
    result.textContent = `queued as message ${id}: the conversation starts when they answer`;
  } catch (e) {
    error.querySelector(".error-message").textContent = e.message;
    error.querySelector(".error-hint").textContent = e.hint ? `Hint: ${e.hint}` : "";
    error.hidden = false;
  }
}

async function loadTemplates() {
  state.templatesError = null;
  try {
    state.templates = await api(`/api/channels/${state.channelId}/templates`);
  } catch (e) {
    state.templates = [];
    state.templatesError = e.message; // said in the pickers, not dropped
  }
  renderTemplatePicker($("#new-conversation"));
  if (state.open) renderComposer();
}

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

// ---- channels, events, catching up ------------------------------------------------------------

async function loadChannels() {
  const channels = await api("/api/channels");
  const select = $("#channel");
  const chosen = state.channelId ?? (channels[0] && channels[0].id) ?? null;
  select.replaceChildren(...channels.map((c) => el("option", { value: c.id }, c.name + (c.enabled ? "" : " (disabled)"))));
  state.channelId = chosen;
  if (chosen !== null) select.value = String(chosen);
}

async function catchUp() {
  try {
    await loadChannels();
    await Promise.all([refreshConversations(), refreshHealth(), loadTemplates(), state.open ? resyncOpen() : null]);
  } catch (e) {
    showProblem(e);
  }
}

function setBanner(kind, text) {
  const banner = $("#db-state");
  banner.dataset.state = kind;
  banner.textContent = text;
}

function connectEvents() {
  const events = new EventSource("/api/events");
  events.addEventListener("db", (e) => {
    const db = JSON.parse(e.data);
    if (db.up) {
      setBanner("up", "live");
      if (!state.databaseUp) catchUp(); // first connection, or back after a restart
    } else {
      setBanner("down", `database unreachable (${db.error}): reconnecting; the page catches up when it is back`);
    }
    state.databaseUp = db.up;
  });
  events.addEventListener("message", (e) => {
    const note = JSON.parse(e.data);
    if (state.open && note.contact_id === state.open.row.contact_id) refreshOpen();
    scheduleConversationsRefresh();
  });
  events.addEventListener("status", (e) => {
    applyStatus(JSON.parse(e.data));
    scheduleConversationsRefresh();
  });
  events.addEventListener("media", (e) => {
    const note = JSON.parse(e.data);
    if (state.open && state.open.messages.has(note.message_id)) refreshMessages([note.message_id]);
  });
  events.addEventListener("health", (e) => {
    state.health = JSON.parse(e.data);
    renderHealth();
  });
  events.addEventListener("error", () => {
    // EventSource reconnects by itself; what was missed meanwhile is read on the next "db" event.
    setBanner("down", "the web inbox is unreachable: reconnecting");
    state.databaseUp = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#reply").addEventListener("submit", sendReply);
  $("#reply-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("#reply").requestSubmit(); }
  });
  for (const picker of [$("#template-picker"), $("#new-conversation")]) {
    picker.querySelector(".template-select").addEventListener("change", () => renderTemplateParameters(picker));
  }
  $("#template-picker .template-send").addEventListener("click", sendTemplate);
  $("#new-conversation").addEventListener("submit", sendToNewNumber);
  $("#older-messages").addEventListener("click", () => loadOlderMessages().catch(showProblem));
  $("#more-conversations").addEventListener("click", () => loadOlderConversations().catch(showProblem));
  $("#replying-to .cancel").addEventListener("click", () => { state.replyTo = null; $("#replying-to").hidden = true; });
  $("#channel").addEventListener("change", (e) => {
    state.channelId = Number(e.target.value);
    state.conversations.clear();
    state.open = null;
    $("#conversation").hidden = true;
    $("#nothing-open").hidden = false;
    refreshConversations();
    loadTemplates();
    renderHealth();
  });
  connectEvents();
});
