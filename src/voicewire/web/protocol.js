// The /ws/multimodal connection: JSON frames, binary audio frames, refs, reconnection that
// resumes the same session (its id and resume token from `init`), on whichever worker answers.
// Wire format only; what frames mean to the page is main.js's business. Reference: docs/protocol.md.

// Binary frame: [uint32 BE header length][tts_chunk JSON header][PCM s16le].
export function decodeAudioFrame(buf) {
  const n = new DataView(buf).getUint32(0);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  return { head, pcm: new Int16Array(buf.slice(4 + n)) };
}

export class Connection {
  // handlers: onFrame(frame), onAudio(head, pcm), onState(state, detail)
  // state: "connecting" | "open" | "lost" (will retry in detail.retryMs) | "closed" (by us)
  //   | "unauthorized" (the server wants a credential: detail.message; no retry)
  // credentials(): the WebSocket subprotocols to offer, a client token among them (a browser
  // cannot set an Authorization header on a WebSocket); it throws to say none can be had.
  constructor(url, handlers, credentials = async () => []) {
    this.url = url;
    this.h = handlers;
    this.credentials = credentials;
    this.ws = null;
    this.want = false;
    this.retryMs = 500;
    this.refs = 0;
    this.timer = null;
    this.resume = null; // {session_id, resume_token}: what a reconnection continues
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  async connect() {
    this.want = true;
    clearTimeout(this.timer);
    this.h.onState("connecting");
    let protocols;
    try {
      protocols = await this.credentials(); // a fresh token for every attempt: they expire
    } catch (err) {
      this.want = false;
      return this.h.onState("unauthorized", { message: err.message });
    }
    if (!this.want) return; // disconnected meanwhile
    let url = this.url;
    if (this.resume) {
      const q = new URLSearchParams(this.resume).toString();
      url += (url.includes("?") ? "&" : "?") + q;
    }
    const ws = (this.ws = new WebSocket(url, protocols));
    ws.binaryType = "arraybuffer";
    let opened = false;
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const frame = JSON.parse(ev.data);
        if (frame.type === "init") {
          this.retryMs = 500;
          if (frame.resume_token)
            this.resume = { session_id: frame.session_id, resume_token: frame.resume_token };
        }
        this.h.onFrame(frame);
      } else {
        const { head, pcm } = decodeAudioFrame(ev.data);
        this.h.onAudio(head, pcm);
      }
    };
    ws.onopen = () => {
      opened = true;
      this.h.onState("open");
    };
    ws.onclose = async (ev) => {
      if (ws !== this.ws) return; // a socket we already replaced
      if (!this.want) return this.h.onState("closed", { code: ev.code });
      if (!opened && (await this.refusedForAuth())) {
        this.want = false;
        return this.h.onState("unauthorized", { message: "this server needs an API key" });
      }
      const retryMs = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, 8000);
      this.h.onState("lost", { retryMs, code: ev.code });
      this.timer = setTimeout(() => this.want && this.connect(), retryMs);
    };
  }

  // A handshake refused with HTTP 401 looks like any failed connection to a page: ask /health
  // whether the server wants a credential we did not bring.
  async refusedForAuth() {
    try {
      const health = await (await fetch("/health")).json();
      return health.auth === "api_key" && (await this.credentials()).length === 0;
    } catch {
      return false;
    }
  }

  disconnect() {
    this.want = false;
    this.resume = null; // the user ended it: the next connection is a new conversation
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }

  // Send a client frame; returns its ref (for matching the ack), or null if not connected.
  send(frame) {
    if (!this.open) return null;
    const ref = frame.ref || `r${++this.refs}`;
    this.ws.send(JSON.stringify({ ...frame, ref }));
    return ref;
  }

  sendAudio(pcmBuffer) {
    if (!this.open) return false;
    this.ws.send(pcmBuffer);
    return true;
  }
}
