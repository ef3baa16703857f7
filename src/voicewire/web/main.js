// voicewire browser client: wires the connection, the player, the microphone and the view.
// No build step and no CDN: ES modules served by the server. Protocol: docs/protocol.md.

import { Connection } from "./protocol.js";
import { Player } from "./player.js";
import { Microphone } from "./microphone.js";
import { $, TurnView, pageNote, setActivity, setConnection, showCost } from "./view.js";

// State the tests read (and a curious user can, in the console).
const vw = (window.vw = {
  connected: false, frames: 0, audioSentMs: 0, sentTimes: [], activity: [], reports: [],
});

const turns = new Map(); // utterance id -> TurnView
const running = new Set(); // utterances the server is still working on
const stopped = new Set(); // utterances the user stopped: nothing more of them is shown
const typed = new Map(); // ref of a user_text -> its text, until the ack names the utterance
let mode = "server_vad";
let talking = false; // push-to-talk held

const player = new Player({
  onStart: () => setActivity("speaking"),
  onIdle: (uid, stopped) => {
    if (!stopped) report(uid, true); // played to its end: the server may stop listening for echo
    settle();
  },
});
const mic = new Microphone(() => player.context(), onMicFrame);
const proto = location.protocol === "https:" ? "wss" : "ws";
const conn = new Connection(
  `${proto}://${location.host}/ws/multimodal`,
  { onFrame, onAudio, onState: onConnectionState },
  credentials,
);

// With API keys on (docs/deploy.md), the page connects with a client token, fresh for each
// attempt: from the page's own backend (?token_url=..., which answers {"token": ...}), or, in
// development, minted here with an API key typed into the page (kept for this tab only).
const KEY_ITEM = "voicewire-api-key";
const params = new URLSearchParams(location.search);

async function credentials() {
  const tokenUrl = params.get("token_url");
  let response;
  if (tokenUrl) {
    response = await fetch(tokenUrl, { method: "POST", credentials: "include" });
  } else {
    const key = sessionStorage.getItem(KEY_ITEM);
    if (!key) return [];
    response = await fetch("/v1/client_tokens", {
      method: "POST",
      headers: { Authorization: `Bearer ${key}` },
    });
    if (response.status === 400) return []; // this server takes no keys
    if (response.status === 401) {
      sessionStorage.removeItem(KEY_ITEM);
      throw new Error("that API key was refused");
    }
  }
  if (!response.ok) throw new Error(`no client token (HTTP ${response.status})`);
  const { token } = await response.json();
  return ["voicewire", `voicewire-token.${token}`];
}

$("key-form").onsubmit = (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY_ITEM, $("api-key").value.trim());
  $("api-key").value = "";
  $("key-form").hidden = true;
  conn.connect();
};
Object.assign(vw, { player, mic, turns });
Object.defineProperty(vw, "samplesScheduled", { get: () => player.samplesScheduled });

function turn(uid) {
  let t = turns.get(uid);
  if (!t) turns.set(uid, (t = new TurnView(uid)));
  return t;
}

// Nothing runs and nothing plays: the agent waits for the user (or was stopped).
function settle() {
  updateStop();
  const busy = running.size > 0 || [...turns.keys()].some((uid) => player.playing(uid));
  if (!busy) setActivity(vw.activity.at(-1) === "stopped" ? "stopped" : "idle");
}

// ------------------------------------------------------------------ connection

function onConnectionState(state, detail) {
  if (state === "connecting") setConnection(state, "connecting…");
  if (state === "unauthorized") {
    setConnection(state, `not connected: ${detail.message}`);
    $("key-form").hidden = false;
    $("api-key").focus();
  }
  if (state === "lost" || state === "closed") {
    vw.connected = false;
    for (const uid of running) {
      player.stop(uid);
      turn(uid).note("error", "the connection was lost before this turn finished");
      turn(uid).done("failed");
    }
    running.clear();
    $("connect").textContent = "Connect";
    setConnection(state, state === "lost" ? `Connection lost — reconnecting in ${(detail.retryMs / 1000).toFixed(1)} s` : "disconnected");
    updateComposer();
    settle();
  }
}

$("connect").onclick = () => (vw.connected ? conn.disconnect() : conn.connect());

// ------------------------------------------------------------------ frames

function onFrame(f) {
  vw.frames++;
  const uid = f.utterance_id;
  const t = uid ? turn(uid) : null;
  const heard = uid && !stopped.has(uid); // a stopped reply shows nothing more
  switch (f.type) {
    case "init":
      vw.connected = true;
      setConnection("open", f.resumed ? "connected (conversation resumed)" : "connected", f.providers.llm);
      $("session").textContent = f.session_id;
      $("connect").textContent = "Disconnect";
      // this page plays replies and reports how far it got: replies it is still playing can be
      // talked over, and the agent remembers what was heard
      conn.send({ type: "session_update", turn_detection: mode, reports_playback: true });
      updateComposer();
      setActivity("idle");
      break;
    case "ack":
      if (f.request === "user_text" && typed.has(f.ref)) {
        t.userWords(typed.get(f.ref));
        typed.delete(f.ref);
        begin(uid, "thinking");
      } else if (f.request === "audio_commit") {
        t.userPending("transcribing…");
        begin(uid, "transcribing");
      } else if (f.request === "user_audio") begin(uid, "transcribing");
      break;
    case "speech_started":
      t.userPending("listening…");
      setActivity("listening");
      break;
    case "speech_stopped":
      t.userPending("transcribing…");
      begin(uid, "transcribing");
      break;
    case "stt_complete":
      t.userWords(f.text);
      if (heard) setActivity("thinking");
      break;
    case "tool_call_start":
      if (heard) t.toolStart(f);
      break;
    case "tool_call_complete":
      if (heard) t.toolDone(f);
      break;
    case "assistant_text":
      if (heard) {
        t.expect(f.text);
        player.at(uid, f.offset_ms, () => t.sentence(f.text));
      }
      break;
    case "visualization_data":
      if (heard) player.at(uid, f.offset_ms, () => t.chart(f));
      break;
    case "metrics_update":
      t.waterfall(f.timings);
      break;
    case "cost_update":
      showCost(f);
      break;
    case "error":
      onError(f, t);
      break;
    case "provider_fallback":
      (t ? (text) => t.note("notice", text) : (text) => pageNote("notice", text))(
        `${f.stage}: ${f.failed} failed (${f.reason}); ${f.used} answered`,
      );
      break;
    case "utterance_interrupted":
      // the user talked over it: stop at once, say how much was heard, show the rest as cut
      stopped.add(uid);
      player.stop(uid);
      report(uid, false);
      t.interrupted();
      updateStop();
      break;
    case "reply_heard":
      t.body.dataset.heard = f.text;
      break;
    case "utterance_cancelled":
      t.stopped(stopped.has(uid) ? "stopped" : "cancelled");
      break;
    case "utterance_complete":
      running.delete(uid);
      t.done(f.status);
      settle();
      break;
  }
}

function begin(uid, activity) {
  running.add(uid);
  setActivity(activity);
  updateStop();
}

function onError(f, t) {
  if (f.code === "unknown_utterance" && stopped.has(f.utterance_id)) return; // it ended as we stopped it
  const text = `${f.code}: ${f.message}`;
  if (t) return t.note("error", text);
  if (f.ref && typed.has(f.ref)) {
    // a typed message the server refused: show which, so nothing is silently lost
    pageNote("error", `“${typed.get(f.ref)}” was not sent — ${text}`);
    typed.delete(f.ref);
    return;
  }
  pageNote("error", text);
}

function onAudio(head, pcm) {
  if (stopped.has(head.utterance_id)) return;
  turn(head.utterance_id);
  player.play(head.utterance_id, head.offset_ms, pcm, head.sample_rate);
  updateStop();
}

// ------------------------------------------------------------------ playback reports

// Tell the server how much of a reply was played: it remembers only what was heard.
function report(uid, done) {
  const played = player.playedMs(uid);
  vw.reports.push({ uid, played_ms: played, done });
  conn.send({ type: "playback", utterance_id: uid, played_ms: played, done });
}

// The user takes the floor (push-to-talk): stop every reply now, server-side too.
function interruptReplies() {
  const active = new Set([...running, ...player.active()]);
  if (!active.size) return;
  for (const uid of active) {
    stopped.add(uid);
    player.stop(uid);
    report(uid, false);
    turn(uid).interrupted();
  }
  conn.send({ type: "interrupt" });
  updateStop();
}

// ------------------------------------------------------------------ stop

function stopAll() {
  for (const uid of new Set([...running, ...turns.keys()])) {
    if (!running.has(uid) && !player.playing(uid)) continue;
    stopped.add(uid);
    player.stop(uid);
    if (running.has(uid)) conn.send({ type: "cancel", utterance_id: uid });
    else report(uid, false); // finished but still playing: the history keeps what was heard
    turn(uid).stopped();
  }
  setActivity("stopped");
  updateStop();
}

function updateStop() {
  const active = running.size > 0 || [...turns.keys()].some((uid) => player.playing(uid));
  $("stop").disabled = !active;
}

$("stop").onclick = stopAll;

// ------------------------------------------------------------------ typing

function updateComposer() {
  $("send").title = vw.connected ? "" : "not connected";
  if (vw.connected) $("composer-note").textContent = "";
}

$("text-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  player.context(); // a user gesture: the page may play audio from now on
  const ref = conn.send({ type: "user_text", text });
  if (ref === null) {
    // kept in the box, and said: never silently lost
    $("composer-note").textContent = "Not connected: your message was kept and not sent. Send it again once connected.";
    return;
  }
  typed.set(ref, text);
  $("text").value = "";
};

// ------------------------------------------------------------------ microphone

function onMicFrame(pcm, rms) {
  $("level").value = Math.min(1, rms * 4);
  if (mode !== "server_vad" && !talking) return;
  if (conn.sendAudio(pcm)) {
    vw.audioSentMs += 20;
    vw.sentTimes.push(performance.now());
    if (vw.sentTimes.length > 1000) vw.sentTimes.splice(0, 500);
  }
}

function showMic() {
  $("mic").textContent = mic.active ? "Stop microphone" : "Start microphone";
  $("mic").setAttribute("aria-pressed", String(mic.active));
  $("ptt").disabled = !(mic.active && mode === "manual");
  if (!mic.active) $("level").value = 0;
}

$("mic").onclick = async () => {
  if (mic.active) mic.stop();
  else {
    try {
      await mic.start();
    } catch (e) {
      pageNote("error", `microphone: ${e.message}`);
    }
  }
  showMic();
};

document.querySelectorAll("input[name=mode]").forEach((radio) => {
  radio.onchange = () => {
    mode = radio.value;
    conn.send({ type: "session_update", turn_detection: mode });
    showMic();
  };
});

function pttDown() {
  if (mode !== "manual" || !mic.active || talking) return;
  talking = true;
  $("ptt").classList.add("active");
  interruptReplies(); // pressing talk interrupts at once
  setActivity("listening");
}

function pttUp() {
  if (!talking) return;
  talking = false;
  $("ptt").classList.remove("active");
  conn.send({ type: "audio_commit" });
}

$("ptt").addEventListener("pointerdown", pttDown);
$("ptt").addEventListener("pointerup", pttUp);
$("ptt").addEventListener("pointerleave", pttUp);
const typing = () => document.activeElement === $("text");
document.addEventListener("keydown", (e) => {
  if (e.code === "Space" && !typing() && !e.repeat) {
    e.preventDefault();
    pttDown();
  }
});
document.addEventListener("keyup", (e) => {
  if (e.code === "Space" && !typing()) {
    e.preventDefault();
    pttUp();
  }
});

updateStop();
updateComposer();
conn.connect();
