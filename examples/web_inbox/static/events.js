// The web inbox: channels, the event stream, catching up after a lost connection, and start-up
// (last of the scripts: it wires up the others).

// ---- channels, events, catching up ------------------------------------------------------------

async function loadChannels() {
  const channels = await api("/api/channels");
  const select = $("#channel");
  // (A channel no longer granted is no longer chosen.)
  const chosen = channels.some((c) => c.id === state.channelId) ? state.channelId : (channels[0] ? channels[0].id : null);
  select.replaceChildren(...channels.map((c) => el("option", { value: c.id }, c.name + (c.enabled ? "" : " (disabled)"))));
  state.channelId = chosen;
  if (chosen !== null) select.value = String(chosen);
  if (channels.length === 0) {
    throw new Error(`no channel is granted to ${state.role}: an administrator runs SELECT wa_grant_channel('<channel>', '${state.role}')`);
  }
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

// Notifications carry ids only (and the channel's): the page reads the rows they name, as its agent.
function connectEvents() {
  if (state.events) state.events.close();
  const events = new EventSource("/api/events");
  state.events = events;
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
  // A notification carries ids only ({"id", "channel_id", "contact_id"}: LISTEN needs no
  // privilege, so it says nothing a listener may not read); the page reads the rows it names.
  events.addEventListener("message", (e) => {
    const note = JSON.parse(e.data);
    if (note.channel_id !== state.channelId) return; // another channel's: not on this page
    const open = state.open && state.open.row;
    // (An open group: the note does not say which group; reading what is new in it is cheap.)
    if (open && (open.group_id !== null || note.contact_id === open.contact_id)) refreshOpen();
    scheduleConversationsRefresh();
  });
  events.addEventListener("status", (e) => {
    const note = JSON.parse(e.data);
    if (note.channel_id !== state.channelId) return;
    applyStatus(note);
    scheduleConversationsRefresh();
  });
  // A contact changed (a customer stopped or resumed marketing messages): its row is read again.
  events.addEventListener("contact", (e) => {
    const note = JSON.parse(e.data);
    if (note.channel_id !== state.channelId) return;
    if (state.open && state.open.row.contact_id === note.id) refreshOpen();
    scheduleConversationsRefresh();
  });
  // A call changed: the open conversation's ringing calls are read again.
  events.addEventListener("call", (e) => {
    const note = JSON.parse(e.data);
    if (note.channel_id !== state.channelId) return;
    if (state.open && state.open.row.contact_id === note.contact_id) refreshCalls();
  });
  // An action ended (a block, say): the open conversation's row is read again.
  events.addEventListener("action", (e) => {
    const note = JSON.parse(e.data);
    if (note.channel_id === state.channelId && state.open) refreshOpen();
  });
  events.addEventListener("media", (e) => {
    const note = JSON.parse(e.data);
    if (state.open && state.open.messages.has(note.message_id)) refreshLater(note.message_id);
  });
  events.addEventListener("health", (e) => {
    state.health = JSON.parse(e.data);
    renderHealth();
  });
  events.addEventListener("error", () => {
    // EventSource reconnects by itself; what was missed meanwhile is read on the next "db" event.
    setBanner("down", "the web inbox is unreachable: reconnecting");
    state.databaseUp = false;
    // Refused (401: signed out) it gives up instead: the session says what now.
    if (events.readyState === EventSource.CLOSED && state.events === events) checkSession();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#reply").addEventListener("submit", sendReply);
  $("#block-toggle").addEventListener("click", toggleBlock);
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
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", signOut);
  checkSession();
});
