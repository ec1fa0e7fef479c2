// The web inbox: signing in and out (after app.js). The session itself is an HttpOnly cookie
// the page never sees; what the page keeps is the session's CSRF token, which api() sends back
// with every change.

async function checkSession() {
  let session;
  try {
    session = await api("/api/session");
  } catch (e) {
    showSignIn(e.status === 401 ? null : e.message);
    return;
  }
  signedIn(session);
}

function showSignIn(message) {
  if (state.events) { state.events.close(); state.events = null; }
  $("#app").hidden = $("#session").hidden = $("#channel-choice").hidden = true;
  $("#sign-in").hidden = false;
  setBanner("connecting", "signed out");
  const error = $("#sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
}

function signedIn(session) {
  state.role = session.role;
  state.csrf = session.csrf_token;
  $("#signed-in-as").textContent = session.role;
  $("#sign-in").hidden = true;
  $("#app").hidden = $("#session").hidden = $("#channel-choice").hidden = false;
  state.databaseUp = false; // the first "db" event reads everything
  connectEvents();
}

async function signIn(event) {
  event.preventDefault();
  const password = $("#sign-in-password");
  let session;
  try {
    session = await api("/login", { json: { role: $("#sign-in-role").value, password: password.value } });
  } catch (e) {
    showSignIn(e.message);
    return;
  } finally {
    password.value = ""; // kept nowhere, not even in the form
  }
  // Signed in again after a session ended: start afresh, so nothing another role read stays.
  if (state.role !== null) location.reload();
  else signedIn(session);
}

async function signOut() {
  try {
    await api("/logout", { json: {} });
  } finally {
    location.reload(); // nothing of the agent's stays in the page
  }
}
