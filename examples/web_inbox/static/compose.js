// The web inbox: replying, templates, and a first message to a new number (after app.js).

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
    // (datetime-local is the agent's local time without a zone: sent as an instant, with its zone.)
    const sendAt = $("#send-at");
    await api(`/api/conversations/${state.open.row.conversation_id}/text`,
      { json: { body: text.value, reply_to: state.replyTo && state.replyTo.wamid,
                send_at: sendAt.value ? new Date(sendAt.value).toISOString() : null } });
    text.value = "";
    sendAt.value = "";
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

// Cancel (a queued or scheduled message) or retry (a failed one): the row is read again at
// its wa_status notification; a refusal (sent meanwhile, say) shows as the extension worded it.
async function messageAction(m, action) {
  try {
    await api(`/api/messages/${m.id}/${action}`, { json: {} });
    hideComposeError();
  } catch (e) {
    showComposeError(e);
  }
  await refreshMessages([m.id]);
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
