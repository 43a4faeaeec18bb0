// redial's agent page: a SIP.js softphone registered over the node's own
// /ws. window.agentPage mirrors what the page shows, for tests and for
// anyone debugging from the console.
import { UserAgent, Registerer, RegistererState, SessionState, Messager } from "sip.js";

const $ = (id) => document.getElementById(id);

const page = {
  registered: false,
  registration: "unregistered",
  call: "idle", // idle, ringing, connecting, established, ended
  caller: "",
  contactRef: "",
  callRef: "",
  muted: false,
  dtmfSent: "", // keys pressed in this call
  dtmfPlayed: "", // keys whose tones started, in order
  dial: "",
  lastError: "",
  calls: 0,
  // The agent's queue state as the node last said: logged_out,
  // available, ringing, on_call, wrapup or paused (with queueReason).
  queueState: "",
  queueReason: "",
  pc: () => (session && session.sessionDescriptionHandler ? session.sessionDescriptionHandler.peerConnection : undefined),
};
window.agentPage = page;

let ua = null;
let registerer = null;
let session = null;
let timer = null;
let startedAt = 0;

// The agent's queue state travels as SIP MESSAGEs to the agent's own
// address over the registered socket, challenged with digest like the
// REGISTER: the page has no API token.
const AGENT_STATE_TYPE = "application/vnd.redial.agent-state+json";
const STATE_POLL_MS = 2000;
const STATE_LABELS = {
  logged_out: "logged out",
  available: "available",
  ringing: "ringing",
  on_call: "on call",
  wrapup: "wrap-up",
  paused: "paused",
};
let statePoll = null;
let statePolling = false;
// stateGen grows with every change asked for, so an answer to a poll sent
// before it cannot show the old state afterwards.
let stateGen = 0;

function setError(msg) {
  page.lastError = msg;
  const el = $("error");
  el.textContent = msg;
  el.hidden = msg === "";
}

function setRegistration(state) {
  page.registration = state;
  page.registered = state === "registered";
  if (page.registered) startStatePoll();
  else stopStatePoll();
  const el = $("reg-state");
  el.textContent = state;
  el.dataset.state = state.startsWith("failed") ? "failed" : state;
  $("login").disabled = state === "registering" || state === "registered";
  $("logout").hidden = state === "unregistered" || state.startsWith("failed");
}

function setCall(state) {
  page.call = state;
  const el = $("call-state");
  el.textContent = state;
  el.dataset.state = state;
  const live = state === "established";
  $("answer").disabled = state !== "ringing";
  $("hangup").disabled = !(state === "ringing" || state === "connecting" || live);
  $("mute").disabled = !live;
  for (const b of $("keypad").querySelectorAll("button")) b.disabled = !live;
  if (live && !timer) {
    startedAt = Date.now();
    timer = setInterval(tick, 500);
    tick();
  }
  if (!live && timer) {
    clearInterval(timer);
    timer = null;
  }
}

// agentStateRequest sends one MESSAGE about the agent's queue state:
// {} asks, {state, reason} changes. It resolves with {state, reason}.
function agentStateRequest(body) {
  return new Promise((resolve, reject) => {
    if (!ua) {
      reject(new Error("not logged in"));
      return;
    }
    const target = ua.configuration.uri;
    const m = new Messager(ua, target, JSON.stringify(body), AGENT_STATE_TYPE);
    m.message({
      requestDelegate: {
        onAccept(r) {
          try {
            const j = JSON.parse(r.message.body);
            resolve({ state: String(j.state || ""), reason: String(j.reason || "") });
          } catch (e) {
            reject(new Error("unreadable answer: " + e.message));
          }
        },
        onReject(r) {
          let msg = r.message.reasonPhrase;
          try {
            msg = JSON.parse(r.message.body).error || msg;
          } catch (e) {
            // No JSON body: the reason phrase says it.
          }
          reject(new Error(`${r.message.statusCode} ${msg}`));
        },
      },
    }).catch(reject);
  });
}

function showQueueState(state, reason) {
  page.queueState = state;
  page.queueReason = reason;
  const el = $("queue-state");
  let label = STATE_LABELS[state] || state || "—";
  if (state === "paused" && reason) label += ": " + reason;
  el.textContent = label;
  el.dataset.state = state || "unknown";
  const known = page.registered && state !== "";
  $("pause").disabled = !known || (state === "paused" && reason === $("pause-reason").value);
  $("available").disabled = !known || state === "available";
}

async function refreshQueueState() {
  if (statePolling || !page.registered) return;
  statePolling = true;
  const gen = stateGen;
  try {
    const st = await agentStateRequest({});
    if (gen === stateGen && page.registered) {
      showQueueState(st.state, st.reason);
      $("queue-status").textContent = "";
    }
  } catch (e) {
    if (gen === stateGen && page.registered) $("queue-status").textContent = "queue state unavailable: " + e.message;
  } finally {
    statePolling = false;
  }
}

async function changeQueueState(state, reason) {
  const gen = ++stateGen;
  $("queue-status").textContent = "sending…";
  try {
    const st = await agentStateRequest(reason ? { state, reason } : { state });
    if (gen === stateGen) {
      showQueueState(st.state, st.reason);
      $("queue-status").textContent = "";
    }
  } catch (e) {
    if (gen === stateGen) $("queue-status").textContent = "state not changed: " + e.message;
  }
  refreshQueueState();
}

function startStatePoll() {
  if (statePoll) return;
  refreshQueueState();
  statePoll = setInterval(refreshQueueState, STATE_POLL_MS);
}

function stopStatePoll() {
  if (statePoll) clearInterval(statePoll);
  statePoll = null;
  stateGen++;
  $("queue-status").textContent = "";
  showQueueState("", "");
}

function tick() {
  const s = Math.floor((Date.now() - startedAt) / 1000);
  $("call-timer").textContent = String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
}

function showCallInfo() {
  $("caller").textContent = page.caller || "—";
  $("contact-ref").textContent = page.contactRef || "—";
  $("call-ref").textContent = page.callRef || "—";
}

// SIP.js logs through here: its errors (a refused registration, a lost
// socket) are shown on the page, so the console gets them as warnings.
function logConnector(level, category, label, content) {
  const line = `sip.js ${category}: ${content}`;
  if (level === "error" || level === "warn") console.warn(line);
}

async function login(ext, password) {
  setError("");
  await logout();
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  const uri = UserAgent.makeURI(`sip:${encodeURIComponent(ext)}@${host}`);
  if (!uri) {
    setError(`invalid extension "${ext}"`);
    return;
  }
  const wsURL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  ua = new UserAgent({
    uri,
    transportOptions: { server: wsURL },
    authorizationUsername: ext,
    authorizationPassword: password,
    logBuiltinEnabled: false,
    logConnector,
    // No STUN or TURN: the node is the only peer, and nothing leaves for
    // the internet.
    sessionDescriptionHandlerFactoryOptions: { peerConnectionConfiguration: { iceServers: [] } },
    delegate: {
      onInvite: onInvite,
      onDisconnect(err) {
        if (err) {
          setError("connection to the node lost: " + err.message);
          setRegistration("failed: transport");
        }
      },
    },
  });
  registerer = new Registerer(ua);
  const mine = registerer;
  registerer.stateChange.addListener((s) => {
    if (mine !== registerer) return;
    if (s === RegistererState.Registered) setRegistration("registered");
    if (s === RegistererState.Unregistered && page.registration === "registered") setRegistration("unregistered");
  });
  setRegistration("registering");
  try {
    await ua.start();
  } catch (e) {
    setRegistration("failed: transport");
    setError("cannot reach the node at " + wsURL + ": " + e.message);
    return;
  }
  try {
    await registerer.register({
      requestDelegate: {
        onReject(r) {
          const code = r.message.statusCode;
          setRegistration("failed: " + code);
          setError(`registration refused: ${code} ${r.message.reasonPhrase}`);
        },
      },
    });
  } catch (e) {
    setRegistration("failed: " + e.message);
    setError("registration failed: " + e.message);
  }
}

async function logout() {
  if (session) hangup();
  const old = ua;
  const oldReg = registerer;
  ua = null;
  registerer = null;
  if (!old) return;
  try {
    if (oldReg && oldReg.state === RegistererState.Registered) await oldReg.unregister();
  } catch (e) {
    // The node forgets the binding when the socket closes anyway.
  }
  try {
    await old.stop();
  } catch (e) {
    // Stopping a user agent whose socket is gone is harmless.
  }
  setRegistration("unregistered");
}

function onInvite(invitation) {
  if (session) {
    invitation.reject({ statusCode: 486 });
    return;
  }
  session = invitation;
  page.calls++;
  const id = invitation.remoteIdentity;
  page.caller = id.uri.user || id.uri.toString();
  if (id.displayName && id.displayName !== page.caller) page.caller = `${id.displayName} <${page.caller}>`;
  page.callRef = invitation.request.getHeader("X-Redial-Call-Ref") || "";
  page.contactRef = invitation.request.getHeader("X-Redial-Contact-Ref") || "";
  page.muted = false;
  page.dtmfSent = "";
  page.dtmfPlayed = "";
  $("dtmf-sent").textContent = "";
  $("mute").setAttribute("aria-pressed", "false");
  $("mute").textContent = "Mute";
  $("call-timer").textContent = "00:00";
  showCallInfo();
  invitation.stateChange.addListener((s) => {
    if (session !== invitation) return;
    if (s === SessionState.Establishing) setCall("connecting");
    if (s === SessionState.Established) {
      attachRemoteAudio(invitation);
      setCall("established");
    }
    if (s === SessionState.Terminated) {
      session = null;
      $("remote-audio").srcObject = null;
      setCall("ended");
    }
  });
  setCall("ringing");
}

function attachRemoteAudio(s) {
  const pc = s.sessionDescriptionHandler.peerConnection;
  const stream = new MediaStream();
  pc.getReceivers().forEach((r) => r.track && r.track.kind === "audio" && stream.addTrack(r.track));
  const audio = $("remote-audio");
  audio.srcObject = stream;
  audio.play().catch(() => {
    // Autoplay may wait for a user gesture; the answer click is one.
  });
}

async function answer() {
  if (!session || page.call !== "ringing") return;
  setError("");
  try {
    await session.accept({ sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } } });
  } catch (e) {
    setError("answer failed: " + e.message);
  }
}

function hangup() {
  const s = session;
  if (!s) return;
  try {
    if (s.state === SessionState.Initial || (s.state === SessionState.Establishing && page.call === "ringing")) {
      s.reject();
    } else if (s.state === SessionState.Established) {
      s.bye();
    } else if (s.state === SessionState.Establishing) {
      s.dispose();
    }
  } catch (e) {
    setError("hang up failed: " + e.message);
  }
}

function toggleMute() {
  const pc = page.pc();
  if (!pc) return;
  page.muted = !page.muted;
  pc.getSenders().forEach((snd) => {
    if (snd.track && snd.track.kind === "audio") snd.track.enabled = !page.muted;
  });
  $("mute").setAttribute("aria-pressed", String(page.muted));
  $("mute").textContent = page.muted ? "Unmute" : "Mute";
}

// sendTone sends one key as RFC 4733. RTCDTMFSender.insertDTMF, which
// SIP.js calls, replaces the tones still queued, so keys pressed faster
// than they play are queued here behind those.
function sendTone(tone) {
  if (!session || page.call !== "established") return;
  const pc = page.pc();
  const sender = pc && pc.getSenders().find((s) => s.dtmf);
  if (sender && !sender.dtmf.ontonechange) {
    sender.dtmf.ontonechange = (e) => {
      if (e.tone) page.dtmfPlayed += e.tone;
    };
  }
  const queued = sender ? sender.dtmf.toneBuffer : "";
  const ok = session.sessionDescriptionHandler.sendDtmf(queued + tone);
  if (!ok) {
    setError(`key ${tone} could not be sent`);
    return;
  }
  page.dtmfSent += tone;
  $("dtmf-sent").textContent = page.dtmfSent;
}

async function clickToDial(number, group) {
  const ext = $("ext").value.trim();
  const body = { ext, number };
  if (group) body.line_group = group;
  const status = $("dial-status");
  status.textContent = "dialing…";
  page.dial = "pending";
  try {
    const resp = await fetch("/api/v1/click2dial", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const text = await resp.text();
    let msg = text;
    try {
      const j = JSON.parse(text);
      msg = j.error || j.message || j.call_ref || text;
    } catch (e) {
      // Not JSON: show the text as it came.
    }
    if (resp.ok) {
      page.dial = "ok";
      status.textContent = `calling ${number}` + (msg && msg !== text ? ` (${msg})` : "");
    } else {
      page.dial = `error: ${resp.status}`;
      status.textContent = `click-to-dial refused: ${resp.status} ${msg.trim()}`;
    }
  } catch (e) {
    page.dial = "error: network";
    status.textContent = "click-to-dial failed: " + e.message;
  }
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  login($("ext").value.trim(), $("password").value);
});
$("logout").addEventListener("click", () => logout());
$("pause").addEventListener("click", () => changeQueueState("paused", $("pause-reason").value));
$("available").addEventListener("click", () => changeQueueState("available", ""));
$("pause-reason").addEventListener("change", () => showQueueState(page.queueState, page.queueReason));
$("answer").addEventListener("click", answer);
$("hangup").addEventListener("click", hangup);
$("mute").addEventListener("click", toggleMute);
for (const b of $("keypad").querySelectorAll("button")) {
  b.addEventListener("click", () => sendTone(b.dataset.tone));
}
document.addEventListener("keydown", (e) => {
  if (page.call === "established" && /^[0-9*#]$/.test(e.key) && !(e.target instanceof HTMLInputElement)) sendTone(e.key);
});
$("dial-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const n = $("dial-number").value.trim();
  if (n) clickToDial(n, $("dial-group").value.trim());
});
window.addEventListener("beforeunload", () => {
  if (ua) ua.stop();
});
setRegistration("unregistered");
setCall("idle");
page.ready = true;
