"""The in-process llama-cpp provider on a tiny random-weight GGUF the test writes.

Needs the optional extra (``pip install -e '.[llama]'``, which compiles llama.cpp), so it runs
in ``make test-llama``, not in ``make test``; without the package these tests are skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from tests.conftest import check_invariants, start_server
from tests.tiny_gguf import write_tiny_llama
from voicewire.client import Client
from voicewire.providers.base import TextDelta, UsageReport
from voicewire.providers.llamacpp import LlamaCppLLM
from voicewire.providers.runner import ModelRunner

pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


async def test_streams_tokens_off_the_loop_and_reports_usage(gguf_file: Path) -> None:
    runner = ModelRunner(1)
    llm = LlamaCppLLM(gguf_file, runner, system_prompt="Be brief.", max_tokens=8)
    events = [e async for e in llm.stream([{"role": "user", "content": "hello there"}], [])]
    runner.shutdown()
    deltas = [e for e in events if isinstance(e, TextDelta)]
    (usage,) = [e.usage for e in events if isinstance(e, UsageReport)]
    assert deltas and events[-1].__class__ is UsageReport
    assert 1 <= usage.output_tokens <= 9  # max_tokens, plus the role chunk
    assert usage.input_tokens >= 10  # system + user through the chat template
    assert usage.cpu_seconds > 0


async def test_a_turn_through_the_server(gguf_file: Path) -> None:
    srv = start_server(
        None, llm=f"llama-cpp:{gguf_file}", stt="simulated:zero", tts="simulated:zero",
        llm_max_tokens=8,
    )  # fmt: skip
    try:
        client = await Client.connect(srv.ws_url)
        assert client.init.providers["llm"] == "llama-cpp:tiny.gguf"
        result = await client.ask("hello")
        await client.close()
    finally:
        srv.stop()
    check_invariants([r.frame for r in result.frames])
    assert result.status == "completed" and result.of_type("llm_streaming")


def test_a_missing_file_fails_at_start_up(tmp_path: Path) -> None:
    from voicewire.providers import ConfigError

    with pytest.raises(ConfigError, match="GGUF file"):
        start_server(None, llm=f"llama-cpp:{tmp_path / 'nope.gguf'}")
