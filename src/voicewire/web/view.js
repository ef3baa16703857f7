// Everything the page shows: the connection and what the agent is doing, one card per turn
// (your words, its reply, tool cards, charts, timings), costs. DOM only: no protocol, no audio.

export const $ = (id) => document.getElementById(id);

const ACTIVITY = {
  idle: "ready",
  listening: "listening…",
  transcribing: "transcribing…",
  thinking: "thinking…",
  speaking: "speaking",
  stopped: "stopped",
};

export function setConnection(state, text, detail = "") {
  $("status").textContent = text;
  $("provider").textContent = detail;
  $("status-dot").className = "dot " + (state === "open" ? "on" : "off");
}

export function setActivity(state) {
  const node = $("activity");
  node.textContent = ACTIVITY[state] || state;
  node.dataset.state = state;
  window.vw.activity.push(state);
}

// ------------------------------------------------------------------ the conversation

const conversation = () => $("conversation");

// Keep the newest content in view, unless the user scrolled up to read.
function follow(fn) {
  // the conversation scrolls on its own, or (narrow screens) with the whole main area
  const own = getComputedStyle(conversation()).overflowY === "auto";
  const box = own ? conversation() : document.querySelector("main");
  const pinned = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const node = fn();
  if (pinned) (node.closest(".turn") || node).scrollIntoView({ block: "end" });
  return node;
}

export class TurnView {
  constructor(uid) {
    this.uid = uid;
    this.body = follow(() => addEl(conversation(), "article", "turn"));
    this.body.dataset.utterance = uid;
    this.user = addEl(this.body, "div", "user pending");
    this.reply = addEl(this.body, "div", "assistant");
    this.tools = new Map(); // call id -> card
    this.sentences = []; // [text, shown]: the reply as sent, for showing what was cut
  }

  userPending(label) {
    this.user.classList.add("pending");
    this.user.textContent = label;
  }

  userWords(text) {
    this.user.classList.remove("pending");
    this.user.textContent = text;
  }

  expect(text) {
    this.sentences.push({ text, shown: false });
  }

  sentence(text) {
    const entry = this.sentences.find((e) => e.text === text && !e.shown);
    if (entry) entry.shown = true;
    follow(() => addEl(this.reply, "span", "sentence", text + " "));
  }

  // The user talked over this reply: what they did not hear is shown struck through.
  interrupted() {
    this.body.classList.add("interrupted");
    for (const entry of this.sentences) {
      if (!entry.shown) addEl(this.reply, "span", "unheard", entry.text + " ");
      entry.shown = true;
    }
    this.stopped("interrupted");
  }

  toolStart(f) {
    const card = follow(() => addEl(this.body, "details", "tool running"));
    const summary = addEl(card, "summary");
    addEl(summary, "b", "", f.name);
    addEl(summary, "span", "outcome", " running…");
    addEl(card, "div", "label", "arguments");
    addEl(card, "pre", "json", JSON.stringify(f.arguments, null, 2));
    this.tools.set(f.call_id, card);
  }

  toolDone(f) {
    const card = this.tools.get(f.call_id) || (this.toolStart({ ...f, arguments: {} }), this.tools.get(f.call_id));
    card.classList.remove("running");
    const outcome = card.querySelector(".outcome");
    if (f.error) {
      card.classList.add("failed");
      outcome.textContent = ` failed: ${f.error}`;
    } else {
      outcome.textContent = ` ${f.duration_ms.toFixed(0)} ms · ${brief(f.result)}`;
      addEl(card, "div", "label", "result");
      addEl(card, "pre", "json", JSON.stringify(f.result, null, 2));
    }
  }

  chart(f) {
    const div = follow(() => addEl(this.body, "div", "chart"));
    div.dataset.callId = f.call_id;
    const narrow = window.matchMedia("(max-width: 600px)").matches;
    const layout = { ...f.figure.layout, autosize: true, margin: { l: 48, r: 16, t: 56, b: 40 } };
    if (window.Plotly) {
      // on a phone the mode bar would sit on the title: it goes; elsewhere it shows on hover
      window.Plotly.newPlot(div, f.figure.data, layout, {
        responsive: true, displaylogo: false, displayModeBar: narrow ? false : "hover",
      });
    }
    const title = (layout.title && layout.title.text) || f.figure.data[0].type + " chart";
    const link = addEl(addEl($("charts"), "li"), "a", "", title);
    link.href = "#";
    link.onclick = (e) => {
      e.preventDefault();
      div.scrollIntoView({ behavior: "smooth" });
    };
  }

  waterfall(timings) {
    const box = addEl(this.body, "div", "waterfall");
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

  note(cls, text) {
    follow(() => addEl(this.body, "div", cls, text));
  }

  // The turn ended without being heard to its end: say so on the card.
  stopped(label = "stopped") {
    this.body.classList.add("stopped");
    if (!this.body.querySelector(".stop-mark")) addEl(this.reply, "span", "stop-mark", ` — ${label}`);
  }

  done(status) {
    this.body.dataset.status = status;
    if (this.user.classList.contains("pending")) this.userWords(status === "empty" ? "(nothing heard)" : "");
  }
}

export function pageNote(cls, text) {
  follow(() => addEl(conversation(), "div", cls, text));
}

const STAGES = [["stt_ms", "STT"], ["llm_ttft_ms", "LLM first token"], ["tools_ms", "Tools"],
  ["tts_ttfb_ms", "TTS first byte"], ["ttfa_ms", "First audio"]];

// ------------------------------------------------------------------ costs

// Amounts arrive as exact decimal strings. Show cents for cents, and two significant digits
// for fractions of a cent ("$0.000016"), never ten decimals nor exponent notation.
export function usd(text) {
  const v = Number(text);
  if (!Number.isFinite(v) || v === 0) return "$0";
  if (Math.abs(v) >= 0.01) return "$" + v.toFixed(v >= 100 ? 2 : 4).replace(/(\.\d\d\d*?)0+$/, "$1");
  const decimals = Math.min(10, Math.ceil(-Math.log10(Math.abs(v))) + 1);
  return "$" + v.toFixed(decimals);
}

export function showCost(f) {
  $("cost-turn").textContent = usd(f.utterance.total_usd);
  $("cost-session").textContent = usd(f.session_total_usd);
  $("cost-minute").textContent = usd(f.usd_per_minute);
  $("cost-components").textContent = ["stt", "llm", "tts"].map((c) => `${c} ${usd(f.utterance[c])}`).join(" · ");
}

// ------------------------------------------------------------------ helpers

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function addEl(parent, tag, cls, text) {
  const node = el(tag, cls, text);
  parent.append(node);
  return node;
}

function brief(result) {
  if (result && typeof result.summary === "string") return result.summary;
  if (result && result.metric && result.value !== undefined) {
    const where = result.symbol || result.location || "";
    return `${result.metric}${where ? " " + where : ""}: ${result.value} ${result.unit || ""}` +
      (result.simulated ? " (simulated)" : "");
  }
  const text = JSON.stringify(result);
  return text.length > 120 ? text.slice(0, 117) + "…" : text;
}
