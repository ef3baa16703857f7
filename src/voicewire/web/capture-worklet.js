// Microphone capture: downsample the AudioContext's rate to 16 kHz PCM s16le in 20 ms frames.
// Runs on the audio thread, so the main thread only forwards ready-made frames to the socket.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000; // input samples per output sample
    this.pos = 0; // fractional read position into the carried input
    this.carry = new Float32Array(0);
    this.frame = new Int16Array(320);
    this.filled = 0;
    this.sumSquares = 0;
    this.stopped = false;
    this.port.onmessage = ({ data }) => {
      if (data === "stop") this.stopped = true;
    };
  }

  process(inputs) {
    if (this.stopped) return false; // released: no more frames from this node
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const data = new Float32Array(this.carry.length + channel.length);
    data.set(this.carry);
    data.set(channel, this.carry.length);
    let pos = this.pos;
    while (pos + this.ratio < data.length) {
      // average the input samples this output sample covers: a cheap anti-alias filter
      const start = Math.floor(pos), end = Math.floor(pos + this.ratio);
      let sum = 0;
      for (let i = start; i < end; i++) sum += data[i];
      const v = Math.max(-1, Math.min(1, sum / Math.max(1, end - start)));
      this.frame[this.filled++] = v < 0 ? v * 32768 : v * 32767;
      this.sumSquares += v * v;
      if (this.filled === this.frame.length) {
        const rms = Math.sqrt(this.sumSquares / this.frame.length);
        this.port.postMessage({ pcm: this.frame.buffer.slice(0), rms });
        this.filled = 0;
        this.sumSquares = 0;
      }
      pos += this.ratio;
    }
    const used = Math.floor(pos);
    this.carry = data.slice(used);
    this.pos = pos - used;
    return true;
  }
}
registerProcessor("capture", CaptureProcessor);
