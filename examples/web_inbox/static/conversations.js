// The web inbox: the conversations list (loaded by index.html after app.js, whose state and
// helpers it uses; classic scripts share one global scope).

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
        row.marketing_opt_out_at
          ? el("span", { class: "opted-out", title: `stopped marketing messages (since ${time(row.marketing_opt_out_at)})` }, "no marketing")
          : null,
        row.unread_count > 0 ? el("span", { class: "unread", title: "unread messages" }, row.unread_count) : null));
  });
  $("#conversations").replaceChildren(...items);
  $("#more-conversations").hidden = !state.moreConversations;
}
