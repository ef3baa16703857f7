"""The REST routes under schemathesis: requests generated from our own OpenAPI schema, valid
and deliberately invalid, sent to a real server with API keys on. No answer is a 500, and
none of them works without the key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.conftest import RunningServer, start_server
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeSTT, FakeTTS

KEY = "vw-fuzz-key-0123456789abcdef"
PUBLIC = {"/health", "/health/ready"}


@pytest.fixture(scope="module")
def live() -> Iterator[RunningServer]:
    srv = start_server(Providers(FakeSTT(), FakeLLM(), FakeTTS()), api_keys=KEY)
    yield srv
    srv.stop()


def test_no_request_gets_a_500_and_none_works_without_the_key(live: RunningServer) -> None:
    api = schemathesis.openapi.from_url(live.base + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/metrics", "/session/{session_id}", "/stt-test"}
    calls: dict[str, int] = {}
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in ((op, mode) for op in operations for mode in modes):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=live.base, headers={"Authorization": f"Bearer {KEY}"})
            calls[case.path] = calls.get(case.path, 0) + 1
            where = (case.method, case.formatted_path, response.text[:300])
            assert response.status_code != 500, where
            if response.status_code >= 400:
                body = response.json()
                assert "detail" in body or "error" in body, where  # a reason, in JSON
            if case.path not in PUBLIC:
                anonymous = case.call(base_url=live.base, headers={"Authorization": ""})
                assert anonymous.status_code == 401, where

        try:
            check()
        except Unsatisfiable:  # no input to make invalid (GET /health)
            if mode is schemathesis.GenerationMode.POSITIVE:
                raise
    assert calls["/stt-test"] >= 60 and calls["/v1/client_tokens"] >= 60, calls  # fuzzed
