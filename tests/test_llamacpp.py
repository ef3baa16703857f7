"""The in-process llama-cpp provider on a tiny random-weight GGUF the test writes.

Needs the optional extra (``pip install -e '.[llama]'``, which compiles llama.cpp), so it runs
in ``make test-llama``, not in ``make test``; without the package these tests are skipped.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture(scope="module")
def llama_server(gguf_file: Path) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server (a third party's SSE, not our fake)."""
    pytest.importorskip("sse_starlette")  # the [server] extra
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_file),
           "--model_alias", "tiny", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # ready when uvicorn says so; fails if the process dies first
        if "Uvicorn running" in line:
            break
    else:
        pytest.fail(f"llama_cpp.server exited with {proc.wait()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # never let its log block it
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(10)


async def test_a_real_openai_compatible_server(llama_server: str) -> None:
    srv = start_server(
        None, llm="openai-compatible:tiny", compat_base_url=llama_server,
        stt="simulated:zero", tts="simulated:zero", llm_max_tokens=8,
    )  # fmt: skip
    try:
        client = await Client.connect(srv.ws_url)
        result = await client.ask("hello there")
        await client.close()
    finally:
        srv.stop()
    check_invariants([r.frame for r in result.frames])
    assert not result.of_type("error"), result.of_type("error")
    assert result.status == "completed" and result.of_type("llm_streaming")
