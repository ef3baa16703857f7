"""Log lines for people (default) or for a log pipeline (``VOICEWIRE_LOG_FORMAT=json``).

JSON: one object per line with the time, level, logger and message, plus the session and
utterance a line was written for (``session_id``, ``utterance_id``), taken from context
variables the conversation sets, so no call site has to pass them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

from voicewire.providers.runner import model_owner  # the session a task works for

current_utterance: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_utterance", default=""
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if session := model_owner.get():
            line["session_id"] = session
        if utterance := current_utterance.get():
            line["utterance_id"] = utterance
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """The process's logging: ``fmt`` "text" or "json"; uvicorn's loggers write through it."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
