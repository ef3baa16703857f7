"""docs/protocol.md documents every frame, every field and every error code in protocol.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voicewire.protocol import (
    CLIENT_FRAME_TYPES,
    SERVER_FRAME_CLASSES,
    ErrorCode,
    ServerFrame,
    StageTimings,
    client_frame_adapter,
)

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()


def section(frame_type: str) -> str:
    match = re.search(rf"^### `{frame_type}`\n(.*?)(?=^#{{2,3}} )", DOC, re.S | re.M)
    assert match, f"docs/protocol.md has no section '### `{frame_type}`'"
    return match.group(1)


@pytest.mark.parametrize("cls", SERVER_FRAME_CLASSES, ids=lambda c: c.__name__)
def test_server_frame_and_its_fields_are_documented(cls: type[ServerFrame]) -> None:
    kind = cls.model_fields["type"].default
    text = section(kind)
    for name in set(cls.model_fields) - set(ServerFrame.model_fields):
        assert f"`{name}`" in text, f"field {name} of {kind} is not documented"


def test_client_frames_and_fields_are_documented() -> None:
    union = client_frame_adapter.core_schema["choices"]  # type: ignore[index]
    assert set(union) == set(CLIENT_FRAME_TYPES)
    for kind in CLIENT_FRAME_TYPES:
        text = section(kind)
        fields = union[kind]["schema"]["fields"]
        for name in set(fields) - {"type", "ref"}:
            assert f"`{name}`" in text, f"field {name} of {kind} is not documented"


def test_envelope_timings_and_error_codes_are_documented() -> None:
    for name in ServerFrame.model_fields:
        assert f"| `{name}` |" in DOC
    for name in StageTimings.STAGES:
        assert f"| `{name}` |" in DOC
    for code in ErrorCode:
        assert f"| `{code.value}` |" in DOC, f"error code {code.value} is not documented"
