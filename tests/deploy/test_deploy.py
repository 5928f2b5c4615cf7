"""deploy/ checked without a Docker daemon (none runs on the development machines):
the compose file against the Compose specification, the Kubernetes manifests against
the Kubernetes schemas, the Dockerfile's properties, and the systemd unit with
`systemd-analyze verify` (the machine's own systemd)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30.0"


def _k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_compose_file_is_valid_compose() -> None:
    PyCompose.from_yaml((DEPLOY / "compose.yaml").read_text()).validate()


def test_compose_validator_refuses_a_bad_file() -> None:
    with pytest.raises(ValueError):
        PyCompose.from_yaml("services:\n  a:\n    image: x\n    portz: [1]\n").validate()


def test_compose_runs_two_replicas_behind_the_proxy_which_alone_is_trusted() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "hub1", "hub2", "proxy"} <= set(services)
    proxy_ip = services["proxy"]["networks"]["edge"]["ipv4_address"]
    for hub in ("hub1", "hub2"):
        env = services[hub]["environment"]
        assert env["HONEYMESH_TRUSTED_PROXIES"] == f"{proxy_ip}/32"
        assert services[hub]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["migrate"]["command"] == ["migrate"]
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    # the proxy drops a client's own X-Forwarded-For before adding the real peer
    assert "del-header X-Forwarded-For" in haproxy and "option forwardfor" in haproxy
    assert "ssl crt" in haproxy


@pytest.mark.parametrize(
    ("name", "doc"), _k8s_docs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_kubernetes_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_validator_refuses_a_bad_manifest() -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two"},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kubernetes_set_is_complete_and_locked_down() -> None:
    kinds = {doc["kind"] for _, doc in _k8s_docs()}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "ConfigMap",
        "Secret",
        "NetworkPolicy",
    } <= kinds
    [deployment] = [d for _, d in _k8s_docs() if d["kind"] == "Deployment"]
    [hub] = deployment["spec"]["template"]["spec"]["containers"]
    assert hub["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert hub["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert hub["resources"]["requests"] and hub["resources"]["limits"]
    assert hub["securityContext"]["allowPrivilegeEscalation"] is False
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    [policy] = [d for _, d in _k8s_docs() if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and policy["spec"]["ingress"]


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    user = re.search(r"(?m)^USER (\S+)", final)
    assert user is not None and user.group(1).split(":")[0] not in ("root", "0")
    assert re.search(r"(?m)^HEALTHCHECK .*", final) and "/healthz" in final
    assert "--workers" not in final or "HONEYMESH_WORKERS" in final
    assert "HONEYMESH_WORKERS" in final
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in final, f"no {tool} in the final image"
    assert "--no-index" in final, "the final stage installs only the wheels built before"


SANDBOX = (
    "DynamicUser=yes",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=",
    "SystemCallFilter=@system-service",
)


def test_systemd_unit_is_sandboxed_and_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "honeymesh-hub.service").read_text()
    for option in SANDBOX:
        assert re.search(rf"(?m)^{re.escape(option)}", unit), option
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is part of Debian's systemd"
    # Verify the unit as it would be installed: the hub's binary at its ExecStart path.
    hub = shutil.which("honeymesh-hub") or str(
        Path(__file__).resolve().parents[2] / ".venv/bin/honeymesh-hub"
    )
    env = tmp_path / "hub.env"
    env.write_text((DEPLOY / "systemd" / "hub.env.example").read_text())
    local = unit.replace("/opt/honeymesh/bin/honeymesh-hub", hub).replace(
        "/etc/honeymesh/hub.env", str(env)
    )
    path = tmp_path / "honeymesh-hub.service"
    path.write_text(local)
    done = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip()
        and "Documentation" not in line
        and "network-online" not in line
        and "postgresql.service" not in line
        and "redis-server.service" not in line
    ]
    assert done.returncode == 0 and not problems, problems
