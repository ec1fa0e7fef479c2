// The web inbox's page. Everything it shows comes from the JSON API over whatsapp_channel's
// views; notifications (Server-Sent Events) only say "look at row N", and the page reads rows by
// id: after a lost connection it catches up from the ids it has, so it misses nothing.
// Message text is the customer's: it is only ever put on the page as text (textContent), never
// as HTML.
//
// This file holds the state and the small helpers; index.html loads the rest after it, one
// script a part of the page: conversations.js, conversation.js, compose.js, health.js,
// signin.js, and events.js, which starts it all.
"use strict";

const PAGE_SIZE = 50;
const TYPES_THAT_CHANGE_OTHERS = new Set(["reaction", "edit", "revoke"]);
const STATUS_RANK = { scheduled: 0, queued: 0, sending: 0, sent: 1, delivered: 2, read: 3, played: 4, failed: 100, cancelled: 100 };
const TICKS = { scheduled: "🗓", queued: "🕓", sending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", played: "✓✓", failed: "⚠", cancelled: "⊘" };

const state = {
  role: null,               // the signed-in agent's database role
  csrf: null,               // its session's CSRF token, sent back with every change
  events: null,             // the EventSource
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
  // Every change carries the session's CSRF token (the browser adds the Origin header itself).
  if (init.method && init.method !== "GET" && state.csrf) init.headers["X-CSRF-Token"] = state.csrf;
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { error: `the web inbox is unreachable (${e.message})` });
  }
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = { error: text || `HTTP ${response.status}` }; }
  // Signed out meanwhile (expired, signed out elsewhere, the app restarted): the sign-in form.
  if (response.status === 401 && path !== "/login" && path !== "/api/session") showSignIn(body.error);
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
