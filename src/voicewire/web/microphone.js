// The microphone: getUserMedia -> an AudioWorklet that makes 20 ms frames of 16 kHz PCM.
// stop() tears the whole graph down (track, source, worklet node, its port): a node left
// connected kept posting all-zero frames beside the new one after a restart.

export class Microphone {
  // onFrame(pcmArrayBuffer, rms) for every 20 ms frame while started.
  constructor(context, onFrame) {
    this.context = context; // () => AudioContext (shared with playback)
    this.onFrame = onFrame;
    this.stream = null;
    this.source = null;
    this.node = null;
    this.loaded = new WeakSet(); // contexts that have the worklet module
    this.live = 0; // capture nodes alive: 0 or 1, exposed for tests
  }

  get active() {
    return this.node !== null;
  }

  async start() {
    if (this.node) return;
    const ctx = this.context();
    const stream = await navigator.mediaDevices.getUserMedia({
      // the browser's echo canceller, noise suppression and gain control: an open
      // microphone must not hear the agent's own voice as the user
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    if (!this.loaded.has(ctx)) {
      await ctx.audioWorklet.addModule("/web/capture-worklet.js");
      this.loaded.add(ctx);
    }
    this.stream = stream;
    this.source = ctx.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(ctx, "capture");
    this.live++;
    this.node.port.onmessage = ({ data }) => this.onFrame(data.pcm, data.rms);
    this.source.connect(this.node);
  }

  stop() {
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.source) this.source.disconnect();
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.port.postMessage("stop"); // the processor returns false: the node is released
      this.node.port.close();
      this.node.disconnect();
      this.live--;
    }
    this.stream = this.source = this.node = null;
  }
}
