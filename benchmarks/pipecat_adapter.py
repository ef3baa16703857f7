"""Adapter for ``shared/bench/pipecat_anchor/loadgen.py``: drive voicewire with the same client.

    $VENV/bin/python loadgen.py --adapter voicewire_adapter:ADAPTER \
        --url ws://127.0.0.1:8000/ws/multimodal ...

(copy or symlink this file next to loadgen.py as ``voicewire_adapter.py``, or put its folder on
PYTHONPATH.) The loadgen's "audio" is the PCM of each binary frame, without our header; its
"turn end" is ``utterance_complete``, the last frame of every utterance. Depends on nothing but
the standard library, since it runs in the anchor's venv.
"""

from __future__ import annotations

import json

from loadgen import AUDIO, OTHER, TURN_END, Adapter  # type: ignore[import-not-found]


class VoicewireAdapter(Adapter):  # type: ignore[misc]
    name = "voicewire"

    async def on_open(self, ws) -> None:  # type: ignore[no-untyped-def]
        await ws.recv()  # init

    def encode_user_text(self, text: str) -> str:
        return json.dumps({"type": "user_text", "text": text})

    def classify(self, msg: str | bytes) -> tuple[str, int]:
        if isinstance(msg, bytes | bytearray):
            header_len = int.from_bytes(msg[:4], "big")
            return AUDIO, len(msg) - 4 - header_len
        if '"utterance_complete"' in msg:
            return TURN_END, 0
        return OTHER, 0


ADAPTER = VoicewireAdapter()
