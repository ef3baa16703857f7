// The /ws/multimodal connection: JSON frames, binary audio frames, refs, reconnection.
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
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.ws = null;
    this.want = false;
    this.retryMs = 500;
    this.refs = 0;
    this.timer = null;
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.want = true;
    clearTimeout(this.timer);
    const ws = (this.ws = new WebSocket(this.url));
    ws.binaryType = "arraybuffer";
    this.h.onState("connecting");
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const frame = JSON.parse(ev.data);
        if (frame.type === "init") this.retryMs = 500;
        this.h.onFrame(frame);
      } else {
        const { head, pcm } = decodeAudioFrame(ev.data);
        this.h.onAudio(head, pcm);
      }
    };
    ws.onopen = () => this.h.onState("open");
    ws.onclose = (ev) => {
      if (ws !== this.ws) return; // a socket we already replaced
      if (!this.want) return this.h.onState("closed", { code: ev.code });
      const retryMs = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, 8000);
      this.h.onState("lost", { retryMs, code: ev.code });
      this.timer = setTimeout(() => this.want && this.connect(), retryMs);
    };
  }

  disconnect() {
    this.want = false;
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
