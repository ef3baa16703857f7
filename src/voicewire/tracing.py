"""OpenTelemetry traces of utterances (``VOICEWIRE_OTEL=1``; off by default).

Each utterance becomes one trace: a root span ``utterance`` (from the end of the user's input
to the end of the turn) with a child span per stage: ``stt``, ``llm`` per round, ``tool`` per
call, ``tts.first_byte`` (the first sentence's synthesis up to its first audio), carrying the
session, utterance and provider. The export goes to an OTLP collector configured with the
standard ``OTEL_EXPORTER_OTLP_*`` variables (``OTEL_SERVICE_NAME`` names the service).

The turn notes what it did in a plain list (:class:`Marks`, nothing when tracing is off) and
the spans are made from it when the turn ends, with the times they happened: the hot path
never waits on the SDK.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

_tracer: Any = None  # set by enable()


@dataclass(slots=True)
class Marks:
    """What one turn did, for its trace: (name, start, end, attributes), perf_counter times."""

    spans: list[tuple[str, float, float, dict[str, Any]]] = field(default_factory=list)

    def add(self, name: str, start: float, end: float | None = None, **attrs: Any) -> None:
        self.spans.append((name, start, time.perf_counter() if end is None else end, attrs))


def enable(processor: Any = None) -> None:
    """Export traces; ``processor``: a span processor of your own (the tests use the SDK's
    in-memory exporter), else a batching OTLP/HTTP exporter. Once per process."""
    global _tracer
    if _tracer is not None:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(OTLPSpanExporter())
    name = os.environ.get("OTEL_SERVICE_NAME", "voicewire")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(processor)
    _tracer = provider.get_tracer("voicewire")


def disable() -> None:
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


def export(marks: Marks, start: float, attrs: dict[str, Any]) -> None:
    """The utterance's trace: a root span from ``start`` to now, the marks as its children."""
    if _tracer is None:
        return
    from opentelemetry import trace

    offset = time.time_ns() - time.perf_counter_ns()

    def ns(t: float) -> int:
        return int(t * 1e9) + offset

    root = _tracer.start_span("utterance", start_time=ns(start), attributes=_clean(attrs))
    context = trace.set_span_in_context(root)
    ids = {
        k: v for k, v in attrs.items() if k in ("voicewire.session_id", "voicewire.utterance_id")
    }
    for name, begin, end, extra in marks.spans:
        span = _tracer.start_span(
            name, context=context, start_time=ns(begin), attributes=_clean({**ids, **extra})
        )
        span.end(end_time=ns(end))
    root.end()


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int and float values; None is left out."""
    return {k: v for k, v in attrs.items() if isinstance(v, str | bool | int | float)}
