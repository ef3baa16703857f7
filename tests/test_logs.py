"""Structured logs: one JSON object per line, naming the session and utterance."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile

from voicewire.logs import JsonFormatter, current_utterance
from voicewire.providers.runner import model_owner


def test_a_json_line_names_its_session_and_utterance() -> None:
    record = logging.LogRecord("voicewire.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    model_owner.set("s_abc")
    current_utterance.set("u_def")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        model_owner.set("")
        current_utterance.set("")
    assert line["message"] == "a b" and line["level"] == "warning"
    assert (line["session_id"], line["utterance_id"]) == ("s_abc", "u_def")
    assert line["ts"].endswith("Z")
    assert "session_id" not in json.loads(JsonFormatter().format(record))


def test_the_server_logs_json_lines_when_asked() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "VOICEWIRE_PROFILE": "zero",
        "VOICEWIRE_PORT": str(port),
        "VOICEWIRE_LOG_FORMAT": "json",
        "VOICEWIRE_DATA_DIR": tempfile.mkdtemp(),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicewire.cli", "serve"], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stderr is not None
        lines = []
        for raw in proc.stderr:
            lines.append(json.loads(raw))  # every line is one JSON object
            if "voicewire is ready" in lines[-1]["message"]:
                break
        loggers = {line["logger"] for line in lines}
        assert "uvicorn.error" in loggers  # uvicorn's own lines too
    finally:
        proc.terminate()
        proc.wait(20)
