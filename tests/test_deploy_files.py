"""The deployment files hold to the server they deploy: every setting they set exists, their
probes and metrics are routes and series the server has, their grace periods outlast the
drain. (There is no Docker daemon or cluster here; deploy/run-local.sh runs the compose
topology for real in tests/test_cluster.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import start_server
from voicewire.config import Settings
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeSTT, FakeTTS

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
DRAIN_S = Settings.model_fields["drain_timeout_s"].default


def setting_names() -> set[str]:
    return {f"VOICEWIRE_{name.upper()}" for name in Settings.model_fields}


def k8s() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((DEPLOY / "k8s" / "voicewire.yaml").read_text())
    return {doc["kind"]: doc for doc in docs}


def test_compose_runs_three_workers_redis_postgres_and_nginx() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "postgres", "voicewire", "nginx", "migrate"} <= set(services)
    worker = services["voicewire"]
    assert worker["deploy"]["replicas"] == 3
    env = worker["environment"]
    assert set(env) <= setting_names(), set(env) - setting_names()
    assert {"VOICEWIRE_REDIS_URL", "VOICEWIRE_LEDGER_URL", "VOICEWIRE_TOKEN_SECRET"} <= set(env)
    assert float(worker["stop_grace_period"].rstrip("s")) > DRAIN_S
    template = (DEPLOY / "nginx.conf.template").read_text()
    filled = set(services["nginx"]["environment"])
    assert set(re.findall(r"\$\{(\w+)\}", template)) == filled
    assert "proxy_set_header Upgrade $http_upgrade" in template  # WebSockets pass


def test_the_kubernetes_example_uses_settings_routes_and_series_that_exist() -> None:
    objects = k8s()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(objects)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert set(env) <= setting_names(), set(env) - setting_names()
    for container in pod["initContainers"]:
        assert {e["name"] for e in container["env"]} <= setting_names()
    Settings(**{k.removeprefix("VOICEWIRE_").lower(): v for k, v in env.items() if v})
    drain = float(env.get("VOICEWIRE_DRAIN_TIMEOUT_S") or DRAIN_S)
    pre_stop = server["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > drain + pre_stop
    port = int(env["VOICEWIRE_PORT"])
    assert server["ports"][0]["containerPort"] == port
    uid = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert uid and pod["securityContext"]["runAsUser"] == int(uid.group(1))


async def test_probes_scrapes_and_the_autoscaler_metric_are_what_the_server_serves() -> None:
    objects = k8s()
    metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    template = objects["Deployment"]["spec"]["template"]
    server = template["spec"]["containers"][0]
    scrape = template["metadata"]["annotations"]["prometheus.io/path"]
    srv = start_server(Providers(FakeSTT(), FakeLLM(), FakeTTS()))
    try:
        async with httpx.AsyncClient(base_url=srv.base) as http:
            for probe in ("readinessProbe", "livenessProbe"):
                path = server[probe]["httpGet"]["path"]
                # 200, or 503 while the models load: the route is there and answers JSON
                answer = await http.get(path)
                assert answer.status_code in (200, 503) and answer.json(), path
            series = (await http.get(scrape)).text
    finally:
        srv.stop()
    assert server["readinessProbe"]["httpGet"]["path"] == "/health/ready"  # not liveness
    assert re.search(rf"^{metric}(\{{[^}}]*\}})? ", series, re.M), metric


@pytest.mark.parametrize("line", ["USER voicewire", 'CMD ["voicewire", "serve"]'])
def test_the_image_runs_the_server_unprivileged(line: str) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert line in dockerfile
    assert "/health/ready" in dockerfile  # its healthcheck is readiness
    assert "EXPOSE 8000" in dockerfile and "VOICEWIRE_PORT=8000" in dockerfile
