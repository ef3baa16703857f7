// voicewire browser client: one WebSocket, microphone in, streamed speech and charts out.
// No build step and no CDN. Protocol reference: docs/protocol.md.
"use strict";

const $ = (id) => document.getElementById(id);
const JITTER_S = 0.12; // playback starts this long after the first chunk: absorbs network jitter
const vw = (window.vw = { samplesScheduled: 0, audioSentMs: 0, frames: 0, connected: false });

let ws = null;
let wantConnected = true;
let retryMs = 500;
let audioCtx = null;
let micStream = null;
let micNode = null;
let mode = "server_vad";
let talking = false; // push-to-talk held
let pendingText = null; // typed text, shown in the turn its ack opens
const turns = new Map(); // utterance_id -> turn view
const sources = new Set(); // scheduled AudioBufferSourceNodes, for "stop"

// ------------------------------------------------------------------ connection

function setStatus(text, on) {
  $("status").textContent = text;
  $("status-dot").className = "dot " + (on ? "on" : "off");
}

function connect() {
  wantConnected = true;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws/multimodal`);
  ws.binaryType = "arraybuffer";
  setStatus("connecting…", false);
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onFrame(JSON.parse(ev.data)) : onAudio(ev.data));
  ws.onclose = () => {
    vw.connected = false;
    $("connect").textContent = "Connect";
    if (!wantConnected) return setStatus("disconnected", false);
    const wait = retryMs;
    retryMs = Math.min(retryMs * 2, 8000);
    setStatus(`Connection lost — reconnecting in ${(wait / 1000).toFixed(1)} s`, false);
    setTimeout(() => wantConnected && connect(), wait);
  };
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
}

$("connect").onclick = () => {
  if (ws && ws.readyState <= WebSocket.OPEN && wantConnected) {
    wantConnected = false;
    ws.close();
  } else connect();
};

// ------------------------------------------------------------------ frames

function onFrame(f) {
  vw.frames++;
  const t = f.utterance_id ? turn(f.utterance_id) : null;
  switch (f.type) {
    case "init":
      vw.connected = true;
      retryMs = 500;
      setStatus(`connected — ${f.providers.llm}`, true);
      $("session").textContent = f.session_id;
      $("connect").textContent = "Disconnect";
      send({ type: "session_update", turn_detection: mode });
      break;
    case "ack":
      if (f.request === "user_text" && t && pendingText !== null) {
        t.user.textContent = pendingText;
        pendingText = null;
      }
      break;
    case "stt_complete":
      t.user.textContent = f.text;
      break;
    case "tool_call_start": {
      const card = addEl(t.body, "div", "tool");
      card.dataset.args = JSON.stringify(f.arguments);
      card.textContent = `⚙ ${f.name}(${card.dataset.args}) …`;
      t.tools[f.call_id] = card;
      break;
    }
    case "tool_call_complete": {
      const card = t.tools[f.call_id] || addEl(t.body, "div", "tool");
      const outcome = f.error ? `<span class="err">${esc(f.error)}</span>` : esc(brief(f.result));
      card.innerHTML = `⚙ <b>${esc(f.name)}</b>(<code>${esc(card.dataset.args || "")}</code>) ` +
        `${f.duration_ms.toFixed(0)} ms → ${outcome}`;
      break;
    }
    case "assistant_text":
      atPlayback(t, f.offset_ms, () => addEl(t.reply, "span", "sentence", f.text + " "));
      break;
    case "visualization_data":
      atPlayback(t, f.offset_ms, () => drawChart(t, f));
      break;
    case "metrics_update":
      waterfall(t, f.timings);
      break;
    case "cost_update":
      showCost(f);
      break;
    case "error":
      (t ? t.body : $("conversation")).append(el("div", "error", `${f.code}: ${f.message}`));
      break;
    case "provider_fallback":
      (t ? t.body : $("conversation")).append(
        el("div", "notice", `${f.stage}: ${f.failed} failed (${f.reason}); ${f.used} answered`),
      );
      break;
  }
}

function turn(uid) {
  let t = turns.get(uid);
  if (!t) {
    const body = addEl($("conversation"), "article", "turn");
    body.dataset.utterance = uid;
    t = { uid, body, user: addEl(body, "div", "user"), reply: addEl(body, "div", "assistant"), tools: {},
          start: null }; // start: AudioContext time of offset 0
    turns.set(uid, t);
    body.scrollIntoView({ block: "end", behavior: "smooth" });
  }
  return t;
}

// Run fn when playback reaches offsetMs of this turn's reply (at once without audio).
function atPlayback(t, offsetMs, fn) {
  if (offsetMs == null || !audioCtx) return fn();
  if (t.start === null) t.start = audioCtx.currentTime + JITTER_S;
  const delay = (t.start + offsetMs / 1000 - audioCtx.currentTime) * 1000;
  delay > 5 ? setTimeout(fn, delay) : fn();
}

// ------------------------------------------------------------------ playback

function ensureAudio() {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === "suspended") audioCtx.resume();
  return audioCtx;
}

function onAudio(buf) {
  const view = new DataView(buf);
  const n = view.getUint32(0);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const pcm = new Int16Array(buf.slice(4 + n));
  const ctx = ensureAudio();
  const t = turn(head.utterance_id);
  if (t.start === null) t.start = ctx.currentTime + JITTER_S;
  const audio = ctx.createBuffer(1, pcm.length, head.sample_rate);
  const out = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  const src = ctx.createBufferSource();
  src.buffer = audio;
  src.connect(ctx.destination);
  // chunks are placed by their offset, not queued: no gaps or overlaps between them
  src.start(Math.max(ctx.currentTime, t.start + head.offset_ms / 1000));
  sources.add(src);
  src.onended = () => sources.delete(src);
  t.lastUid = head.utterance_id;
  vw.samplesScheduled += pcm.length;
}

$("stop").onclick = () => {
  for (const src of sources) src.stop();
  sources.clear();
  const last = [...turns.values()].pop();
  if (last) send({ type: "cancel", utterance_id: last.uid });
};

// ------------------------------------------------------------------ microphone

async function startMic() {
  const ctx = ensureAudio();
  micStream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  await ctx.audioWorklet.addModule("/web/capture-worklet.js");
  micNode = new AudioWorkletNode(ctx, "capture");
  micNode.port.onmessage = ({ data }) => {
    $("level").value = Math.min(1, data.rms * 4);
    if (mode === "server_vad" || talking) {
      if (ws && ws.readyState === WebSocket.OPEN) {
        ws.send(data.pcm);
        vw.audioSentMs += 20;
      }
    }
  };
  ctx.createMediaStreamSource(micStream).connect(micNode);
  $("mic").textContent = "Stop microphone";
  $("mic").setAttribute("aria-pressed", "true");
  $("ptt").disabled = mode !== "manual";
}

function stopMic() {
  if (micStream) micStream.getTracks().forEach((tr) => tr.stop());
  if (micNode) micNode.disconnect();
  micStream = micNode = null;
  $("mic").textContent = "Start microphone";
  $("mic").setAttribute("aria-pressed", "false");
  $("ptt").disabled = true;
  $("level").value = 0;
}

$("mic").onclick = () => (micStream ? stopMic() : startMic().catch((e) => setStatus(`microphone: ${e.message}`, false)));

document.querySelectorAll("input[name=mode]").forEach((radio) => {
  radio.onchange = () => {
    mode = radio.value;
    send({ type: "session_update", turn_detection: mode });
    $("ptt").disabled = !(micStream && mode === "manual");
  };
});

function pttDown() {
  if (mode !== "manual" || !micStream || talking) return;
  talking = true;
  $("ptt").classList.add("active");
}
function pttUp() {
  if (!talking) return;
  talking = false;
  $("ptt").classList.remove("active");
  send({ type: "audio_commit" });
}
$("ptt").addEventListener("pointerdown", pttDown);
$("ptt").addEventListener("pointerup", pttUp);
$("ptt").addEventListener("pointerleave", pttUp);
const typing = () => document.activeElement === $("text");
document.addEventListener("keydown", (e) => {
  if (e.code === "Space" && !typing() && !e.repeat) { e.preventDefault(); pttDown(); }
});
document.addEventListener("keyup", (e) => {
  if (e.code === "Space" && !typing()) { e.preventDefault(); pttUp(); }
});

$("text-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  ensureAudio();
  send({ type: "user_text", text });
  $("text").value = "";
  pendingText = text;
};

// ------------------------------------------------------------------ charts, timings, cost

function drawChart(t, f) {
  const div = addEl(t.body, "div", "chart");
  div.dataset.callId = f.call_id;
  if (window.Plotly) Plotly.newPlot(div, f.figure.data, f.figure.layout, { responsive: true, displaylogo: false });
  const title = (f.figure.layout && f.figure.layout.title && f.figure.layout.title.text) || f.figure.data[0].type;
  const item = addEl($("charts"), "li", "", "");
  const link = addEl(item, "a", "", title);
  link.href = "#";
  link.onclick = (e) => { e.preventDefault(); div.scrollIntoView({ behavior: "smooth" }); };
}

const STAGES = [["stt_ms", "STT"], ["llm_ttft_ms", "LLM first token"], ["tools_ms", "Tools"],
  ["tts_ttfb_ms", "TTS first byte"], ["ttfa_ms", "First audio"]];

function waterfall(t, timings) {
  const box = addEl(t.body, "div", "waterfall");
  box.setAttribute("aria-label", "Stage timings");
  const max = Math.max(1, ...STAGES.map(([k]) => timings[k] || 0));
  for (const [key, label] of STAGES) {
    if (timings[key] == null) continue;
    const row = addEl(box, "div", "row");
    addEl(row, "span", "", label);
    addEl(row, "div", "bar").style.width = `${(100 * timings[key]) / max}%`;
    addEl(row, "span", "ms", `${timings[key].toFixed(0)} ms`);
  }
}

function usd(s) {
  // amounts arrive as exact decimal strings; show up to 10 decimals, never exponent notation
  const v = Number(s);
  if (v === 0) return "$0";
  return "$" + (v >= 0.01 ? v.toFixed(4) : v.toFixed(10).replace(/0+$/, ""));
}

function showCost(f) {
  $("cost-turn").textContent = usd(f.utterance.total_usd);
  $("cost-session").textContent = usd(f.session_total_usd);
  $("cost-minute").textContent = usd(f.usd_per_minute);
  $("cost-components").textContent = ["stt", "llm", "tts"].map((c) => `${c} ${usd(f.utterance[c])}`).join(" · ");
}

// ------------------------------------------------------------------ helpers

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function addEl(parent, tag, cls, text) {
  const node = el(tag, cls, text);
  parent.append(node);
  return node;
}
function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}
function brief(result) {
  if (result && result.summary) return result.summary;
  const text = JSON.stringify(result);
  return text.length > 160 ? text.slice(0, 157) + "…" : text;
}

connect();
