// Plays each reply on its own timeline: every audio chunk and every timed event (a sentence
// shown, a chart drawn) is placed at its offset from the reply's start, so text and charts
// appear when the voice reaches them. A reply can be stopped at once: its scheduled audio and
// its pending events go, and the player can tell how much of it was heard.

const JITTER_S = 0.12; // playback starts this long after the first chunk: absorbs network jitter

export class Player {
  constructor({ onStart = () => {}, onIdle = () => {} } = {}) {
    this.ctx = null;
    this.lines = new Map(); // utterance id -> { start, sources, timers, endAt, stoppedAt }
    this.onStart = onStart; // (uid): the reply's first audio is audible now
    this.onIdle = onIdle; // (uid, stopped): its scheduled audio has finished, or was stopped
    this.samplesScheduled = 0;
  }

  context() {
    if (!this.ctx) this.ctx = new AudioContext();
    if (this.ctx.state === "suspended") this.ctx.resume();
    return this.ctx;
  }

  line(uid) {
    let l = this.lines.get(uid);
    if (!l) {
      l = { start: null, sources: new Set(), timers: new Set(), endAt: 0, stoppedAt: null, started: false };
      this.lines.set(uid, l);
    }
    if (l.start === null && this.ctx) l.start = this.ctx.currentTime + JITTER_S;
    return l;
  }

  // Place a chunk of PCM s16le at offsetMs of the reply (not queued: no gaps, no overlaps).
  play(uid, offsetMs, pcm, sampleRate) {
    const ctx = this.context();
    const l = this.line(uid);
    if (l.stoppedAt !== null) return;
    const buffer = ctx.createBuffer(1, pcm.length, sampleRate);
    const out = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(ctx.destination);
    const when = Math.max(ctx.currentTime, l.start + offsetMs / 1000);
    src.start(when);
    l.endAt = Math.max(l.endAt, when + buffer.duration);
    l.sources.add(src);
    src.onended = () => {
      l.sources.delete(src);
      if (!l.sources.size && l.stoppedAt === null) this.onIdle(uid, false);
    };
    if (!l.started) {
      l.started = true;
      this._after(l, when - ctx.currentTime, () => this.onStart(uid));
    }
    this.samplesScheduled += pcm.length;
  }

  // Run fn when playback of the reply reaches offsetMs (at once when there is no audio).
  at(uid, offsetMs, fn) {
    const l = this.line(uid);
    if (l.stoppedAt !== null) return;
    if (offsetMs == null || !this.ctx) return fn();
    this._after(l, l.start + offsetMs / 1000 - this.ctx.currentTime, fn);
  }

  _after(l, delayS, fn) {
    if (delayS <= 0.005) return fn();
    const timer = setTimeout(() => {
      l.timers.delete(timer);
      fn();
    }, delayS * 1000);
    l.timers.add(timer);
  }

  // Milliseconds of the reply heard so far (all of it once it has played out).
  playedMs(uid) {
    const l = this.lines.get(uid);
    if (!l || l.start === null || !this.ctx) return 0;
    const now = l.stoppedAt !== null ? l.stoppedAt : this.ctx.currentTime;
    return Math.max(0, Math.round((Math.min(now, l.endAt || now) - l.start) * 1000));
  }

  // Replies with audio still to play.
  active() {
    return [...this.lines.keys()].filter((uid) => this.playing(uid));
  }

  playing(uid) {
    const l = this.lines.get(uid);
    return !!l && l.stoppedAt === null && l.sources.size > 0;
  }

  pending(uid) {
    const l = this.lines.get(uid);
    return l ? l.sources.size + l.timers.size : 0;
  }

  // Stop a reply now: its audio, and every sentence or chart still waiting for its moment.
  stop(uid) {
    const l = this.lines.get(uid);
    if (!l || l.stoppedAt !== null) return this.playedMs(uid);
    l.stoppedAt = this.ctx ? this.ctx.currentTime : 0;
    for (const timer of l.timers) clearTimeout(timer);
    l.timers.clear();
    for (const src of l.sources) {
      src.onended = null;
      src.stop();
    }
    l.sources.clear();
    this.onIdle(uid, true);
    return this.playedMs(uid);
  }
}
