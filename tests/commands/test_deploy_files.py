"""The deployment files agree with the command line: the Dockerfile's ENTRYPOINT and CMD, and the
compose file's command, parse as `chatstream serve` arguments; both health checks ask /health; the
dashboard and Prometheus configuration are well formed. (Building and serving the image is
`deploy/check-image.sh`, run by hand: it downloads and builds for minutes.)"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml

from chatstream import cli

REPO = Path(__file__).resolve().parents[2]


def dockerfile_instruction(name: str) -> list[str]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(rf"^{name} (\[.*\])$", text, re.MULTILINE)
    assert match, name
    return json.loads(match.group(1))


def serve_args(argv: list[str]):
    assert argv[:2] == ["chatstream", "serve"]
    return cli.parse_command_line(cli.build_parser(), argv[1:])


def test_the_images_entrypoint_serves_the_bundled_model_on_every_interface() -> None:
    args = serve_args(dockerfile_instruction("ENTRYPOINT") + dockerfile_instruction("CMD"))
    assert (args.model, args.host, args.port) == ("smollm2", "0.0.0.0", 8000)
    assert "/health" in (REPO / "Dockerfile").read_text(encoding="utf-8").split("HEALTHCHECK", 1)[1]


def test_the_compose_services() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    service = compose["services"]["chatstream"]
    assert "/health" in " ".join(service["healthcheck"]["test"])
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "redis-cli" in compose["services"]["redis"]["healthcheck"]["test"]
    argv = dockerfile_instruction("ENTRYPOINT") + service["command"]
    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "--conversation-store" not in commands.choices["serve"]._option_string_actions:
        pytest.skip("--conversation-store is not on this branch yet (the conversation store integration)")
    args = serve_args(argv)
    assert args.model == "smollm2" and args.conversation_store == "redis://redis:6379/0"


def test_the_dashboard_and_prometheus_configuration() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "chatstream-dashboard.json").read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert [o["value"] for o in variables["metric_prefix"]["options"]] == ["chatstream:", "vllm:"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert 'model_name="$model_name"' in target["expr"] and "${metric_prefix}" in target["expr"], target
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["chatstream:8000"]
