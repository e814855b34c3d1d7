"""The Kubernetes manifests (deploy/kubernetes): valid for the targeted version, wired together,
hardened, complete in their settings — and their commands run.

Offline throughout. Each manifest is validated with ``kubernetes_validate`` (the API's JSON
schemas, strict: unknown fields are errors) for ``TARGET``. When ``kubectl`` is installed the
production overlay is also rendered with its built-in kustomize and the result validated and
cross-checked; without it those tests skip and the checks on the files themselves still run.

What a pod sees is rebuilt the way the kubelet builds it (``envFrom`` first, then ``env``, whose
``$(VAR)`` references expand from what is defined before), from the ConfigMaps' ``.env`` files
and the Secrets' ``.env.example`` files with their REQUIRED values filled in. With that
environment the container commands are run here for real: the migration Job's
``alembic upgrade head``, the Deployment's ``sh -c`` (metrics directory emptied, then
hypercorn), and ACA-Py with the Deployment's arguments (marker ``acapy``).
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from alembic.config import Config
from alembic.script import ScriptDirectory
from hypercorn.config import Config as HypercornConfig
from kubernetes_validate.utils import latest_version, major_minor
from pydantic import AliasChoices, ValidationError
from pydantic.fields import FieldInfo

from issuer.config import Settings
from issuer.issuance.agents.local import free_port
from issuer.ops.routes import READY_TIMEOUT
from tests.support.acapy import acapy_binary
from tests.test_deploy import HYPERCORN_TOML, ROOT, compose_config, exec_form, final_stage

K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "production"
KUSTOMIZATIONS = (BASE, OVERLAY)
# The oldest Kubernetes the manifests are written for (stated in both kustomization.yaml files
# and the README): autoscaling/v2, policy/v1 and the preStop sleep action (on by default, 1.30).
TARGET = "1.31"
NAMESPACE = "issuer"
ADMIN_PORT, DIDCOMM_PORT = 8031, 8030
# In the containers: their own /tmp (an emptyDir), and the address servers bind to.
TMP = "/tmp"  # noqa: S108
ALL_INTERFACES = "0.0.0.0"  # noqa: S104

# Settings whose value must be kept out of the pod's environment: the image sets
# ISSUER_GIT_REVISION at build time, and any value here, even an empty one, would replace it.
LEFT_TO_IMAGE = frozenset({"git_revision"})
# Settings that are secrets (or URLs that may carry a password): in the Secret, never in the
# ConfigMap. ISSUER_OIDC_PROVIDERS holds the providers' client secrets.
SECRET_SETTINGS = frozenset(
    {
        "secret_key",
        "database_url",
        "acapy_admin_api_key",
        "webhook_api_key",
        "metrics_token",
        "redis_url",
        "amqp_url",
        "smtp_password",
        "github_client_secret",
        "google_client_secret",
        "linkedin_client_secret",
        "facebook_app_secret",
        "oidc_providers",
        "pusher_secret",
        "sentry_dsn",
        "rollbar_access_token",
    }
)
# What a filled-in issuer-secrets.env must hold for the portal and ACA-Py to start.
REQUIRED_SECRETS = frozenset(
    {
        "ISSUER_SECRET_KEY",
        "ISSUER_DATABASE_URL",
        "ISSUER_ACAPY_ADMIN_API_KEY",
        "ISSUER_WEBHOOK_API_KEY",
        "ACAPY_WALLET_KEY",
    }
)
ENV_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

Manifest = dict[str, Any]


# --- reading the tree -----------------------------------------------------------------------


def kustomization(directory: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/kubernetes but the kustomizations themselves."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_documents(path: Path) -> list[Manifest]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents, f"{path} holds no manifest"
    assert all(isinstance(d, dict) for d in documents), path
    return documents


def all_manifests() -> list[Manifest]:
    return [d for path in manifest_files() for d in load_documents(path)]


def find(kind: str, name: str, manifests: list[Manifest] | None = None) -> Manifest:
    found = [
        m
        for m in (all_manifests() if manifests is None else manifests)
        if m["kind"] == kind and m["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def read_env_file(path: Path) -> dict[str, str]:
    """A kustomize ``envs:`` file: ``KEY=VALUE`` lines, ``#`` comment lines, blank lines.

    kustomize keeps quotes and everything after the first ``=``; a line without ``=`` would
    be looked up in the environment of whoever renders, so none may exist here.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, equals, value = line.partition("=")
        assert equals, f"{path.name}:{number}: no '=' in {line!r}"
        assert key == key.strip() and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), (path, line)
        assert key not in values, f"{path.name}:{number}: {key} twice"
        assert not (value.startswith(('"', "'"))), f"{path.name}:{number}: kustomize keeps quotes"
        values[key] = value
    return values


def required_keys(path: Path) -> set[str]:
    """Keys of an ``.env.example`` whose comment block starts with ``# REQUIRED``."""
    required, block = set(), []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            block.append(line)
        elif "=" in line:
            if block and block[0].startswith("# REQUIRED"):
                required.add(line.partition("=")[0])
            block = []
        else:
            block = []
    return required


def generator_files(directory: Path, generator: str) -> dict[str, list[Path]]:
    """``{name: [env files]}`` of a kustomization's configMapGenerator or secretGenerator."""
    return {
        g["name"]: [directory / e for e in g.get("envs", [])]
        for g in kustomization(directory).get(generator, [])
    }


def configmaps(*, overlay: bool) -> dict[str, dict[str, str]]:
    """The ConfigMaps' data: the base's env files, plus the overlay's merged literals."""
    data: dict[str, dict[str, str]] = {}
    for name, files in generator_files(BASE, "configMapGenerator").items():
        data[name] = {k: v for f in files for k, v in read_env_file(f).items()}
    if overlay:
        for generator in kustomization(OVERLAY).get("configMapGenerator", []):
            assert generator.get("behavior") == "merge", generator["name"]
            for literal in generator.get("literals", []):
                key, _, value = literal.partition("=")
                assert key in data[generator["name"]], f"the overlay adds unknown {key}"
                data[generator["name"]][key] = value
    return data


def secret_examples() -> dict[str, dict[str, str]]:
    """The Secrets as their ``.env.example`` files give them (every value empty)."""
    return {
        name: {k: v for f in files for k, v in read_env_file(example_of(f)).items()}
        for name, files in generator_files(OVERLAY, "secretGenerator").items()
    }


def example_of(path: Path) -> Path:
    return path.with_name(path.name + ".example")


def filler(key: str) -> str:
    """A value for a REQUIRED secret, shaped like the real one."""
    if key == "ISSUER_DATABASE_URL":
        return f"postgresql+asyncpg://issuer:{secrets.token_hex(12)}@postgres:5432/issuer"
    return secrets.token_hex(24)


def filled_secrets(**overrides: str) -> dict[str, dict[str, str]]:
    """The example Secrets with every REQUIRED value filled in (and ``overrides`` applied)."""
    filled = secret_examples()
    for data in filled.values():
        for key in data:
            if key in REQUIRED_SECRETS:
                data[key] = filler(key)
            if key in overrides:
                data[key] = overrides[key]
    return filled


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    spec = manifest["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def pod_labels(manifest: Manifest) -> dict[str, str]:
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def container(manifest: Manifest) -> dict[str, Any]:
    containers = pod_spec(manifest)["containers"]
    assert len(containers) == 1, manifest["metadata"]["name"]
    assert isinstance(containers[0], dict)
    return containers[0]


def workloads(manifests: list[Manifest] | None = None) -> list[Manifest]:
    return [
        m
        for m in (all_manifests() if manifests is None else manifests)
        if m["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")
    ]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (``matchLabels`` form, or a Service's plain map) against labels."""
    assert "matchExpressions" not in selector
    wanted = selector.get("matchLabels", selector)
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def container_env(
    spec: dict[str, Any],
    config_maps: dict[str, dict[str, str]],
    secrets_: dict[str, dict[str, str]],
) -> dict[str, str]:
    """The environment the kubelet gives ``spec`` (a container): ``envFrom`` in order, then
    ``env`` in order, each ``$(VAR)`` expanded from the variables defined before it (an
    undefined one stays as written). A missing ConfigMap, Secret or key is a KeyError, as it
    is a start failure for the pod."""
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]])
        else:
            env.update(secrets_[source["secretRef"]["name"]])
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = ENV_REFERENCE.sub(
                lambda m: env.get(m.group(1), m.group(0)), item["value"]
            )
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets_[ref["name"]][ref["key"]]
        else:
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = config_maps[ref["name"]][ref["key"]]
    return env


def setting_env_names(name: str, field: FieldInfo) -> tuple[str, ...]:
    """The variables ``Settings`` reads a field from: its alias choices, else ``ISSUER_X``."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    if isinstance(alias, str):
        return (alias,)
    return (f"ISSUER_{name.upper()}",)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers (any status); fail with the log if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            http_get(url)
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text(errors='replace')}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a process started with ``start_new_session``."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- every manifest is valid -----------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
@pytest.mark.parametrize("version", [TARGET, major_minor(latest_version())])
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    for document in load_documents(path):
        validated = kubernetes_validate.validate(document, version, strict=True)
        assert validated == version, f"no schema of {version} exactly, used {validated}"


def test_generated_configmaps_and_secrets_are_valid() -> None:
    generated = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": d}
        for n, d in configmaps(overlay=True).items()
    ] + [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}, "stringData": d}
        for n, d in filled_secrets().items()
    ]
    for manifest in generated:
        kubernetes_validate.validate(manifest, TARGET, strict=True)


def test_target_version_is_stated() -> None:
    for directory in KUSTOMIZATIONS:
        assert f"Kubernetes {TARGET}" in (directory / "kustomization.yaml").read_text()
    assert f"Kubernetes {TARGET}" in (ROOT / "README.md").read_text()
    namespace = find("Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce-version"] == (
        f"v{TARGET}"
    )


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_lists_every_file_and_only_existing_ones(directory: Path) -> None:
    spec = kustomization(directory)
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert spec["kind"] == "Kustomization"
    listed: set[Path] = set()
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), resource
        else:
            listed.add(path)
    listed |= {(directory / p["path"]).resolve() for p in spec.get("patches", []) if "path" in p}
    for generator in ("configMapGenerator", "secretGenerator"):
        for files in generator_files(directory, generator).values():
            listed |= {f.resolve() for f in files}
    # A filled-in secret file is made from its committed example, and git ignores it.
    ignored = (directory / ".gitignore").read_text().split() if spec.get("secretGenerator") else []
    for path in listed:
        if path.name.endswith(".env") and example_of(path).is_file():
            assert any(fnmatch.fnmatch(path.name, pattern) for pattern in ignored), path.name
        else:
            assert path.is_file(), f"listed but missing: {path.name}"
    present = {
        p.resolve()
        for p in directory.iterdir()
        if p.is_file() and p.name not in ("kustomization.yaml", ".gitignore")
    }
    examples = {p for p in present if p.name.endswith(".example")}
    assert {Path(str(p).removesuffix(".example")) for p in examples} <= listed, "stray example"
    assert present - examples <= listed, f"not listed: {sorted(p.name for p in present - listed)}"


# --- the portal's Deployment ---------------------------------------------------------------


def test_deployment_probes() -> None:
    deployment = find("Deployment", "issuer")
    spec = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"http": int(configmaps(overlay=False)["issuer-config"]["PORT"])}
    assert spec["livenessProbe"]["httpGet"]["path"] == "/health"
    assert spec["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert spec["startupProbe"]["httpGet"]["path"] == "/health"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert spec[probe]["httpGet"]["port"] in ports, probe
    # The readiness check waits up to READY_TIMEOUT for each of the database and the agent.
    assert spec["readinessProbe"]["timeoutSeconds"] > READY_TIMEOUT
    # The liveness probe starts only after the startup probe passed, which allows a minute.
    startup = spec["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_deployment_leaves_the_replicas_to_the_autoscaler() -> None:
    deployment = find("Deployment", "issuer")
    assert "replicas" not in deployment["spec"]
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_every_pod_runs_unprivileged() -> None:
    for workload in workloads():
        name, pod = workload["metadata"]["name"], pod_spec(workload)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] > 0 and context.get("runAsGroup", 1) > 0, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        for spec in pod["containers"] + pod.get("initContainers", []):
            own = spec["securityContext"]
            assert own["runAsNonRoot"] is True, name
            assert own.get("runAsUser", context["runAsUser"]) == context["runAsUser"], name
            assert own["allowPrivilegeEscalation"] is False, name
            assert own["readOnlyRootFilesystem"] is True, name
            assert own.get("privileged", False) is False, name
            assert own["capabilities"] == {"drop": ["ALL"]}, name
            assert own["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert all("hostPort" not in p for p in spec.get("ports", [])), name
    assert pod_spec(find("Deployment", "issuer"))["securityContext"]["runAsUser"] == 10001
    # The image's user (Dockerfile USER 10001:10001).
    users = [a for k, a in final_stage() if k == "USER"]
    assert users[-1] == "10001:10001"


def test_every_pod_has_no_service_links() -> None:
    # A Service named "issuer" would inject ISSUER_PORT=tcp://<ip>:80 (and ISSUER_SERVICE_*),
    # which Settings reads; "acapy" would inject ACAPY_* variables into ACA-Py's options.
    for workload in workloads():
        assert pod_spec(workload)["enableServiceLinks"] is False, workload["metadata"]["name"]
    assert "ISSUER_PORT" in setting_env_names("port", Settings.model_fields["port"])


def test_every_container_has_requests_and_limits() -> None:
    for workload in workloads():
        for spec in pod_spec(workload)["containers"]:
            resources = spec["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) >= {"cpu", "memory"}, (spec["name"], kind)


def test_writable_paths_are_empty_dirs() -> None:
    deployment = find("Deployment", "issuer")
    spec, pod = container(deployment), pod_spec(deployment)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in spec["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in spec["env"]}
    multiproc = env["PROMETHEUS_MULTIPROC_DIR"]
    for path in (TMP, multiproc):
        assert "emptyDir" in mounts[path], path
        assert mounts[path]["emptyDir"].get("sizeLimit"), path
    assert mounts[multiproc] is not mounts[TMP], "its own volume, emptied at every start"
    assert "WEB_CONCURRENCY" in env and int(env["WEB_CONCURRENCY"]) >= 1
    for workload in workloads():
        for other in pod_spec(workload)["containers"]:
            assert TMP in {m["mountPath"] for m in other["volumeMounts"]}, other["name"]


def test_graceful_drain() -> None:
    pod = pod_spec(find("Deployment", "issuer"))
    drain = container(find("Deployment", "issuer"))["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = HypercornConfig.from_toml(HYPERCORN_TOML).graceful_timeout
    assert graceful == 10
    assert drain >= 3, "long enough for kube-proxy and the ingress controller to notice"
    # Sleep, then hypercorn's graceful shutdown, then room for the app's own shutdown.
    assert pod["terminationGracePeriodSeconds"] > drain + graceful


def test_command_is_the_images_without_the_migration() -> None:
    commands = [exec_form(a) for k, a in final_stage() if k == "CMD"]
    image_script = commands[-1][2]
    image_serve = shlex.split(image_script[image_script.index("exec python") :])
    spec = container(find("Deployment", "issuer"))
    assert "args" not in spec
    argv = spec["command"]
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3
    script = argv[2]
    assert "alembic" not in script
    cleanup, _, serve = script.partition(" && ")
    assert cleanup == 'find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete'
    assert shlex.split(serve) == image_serve
    assert "--workers" in image_serve and '"${WEB_CONCURRENCY:-1}"' in script


def test_prometheus_scrape_annotations() -> None:
    deployment = find("Deployment", "issuer")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    port = container(deployment)["ports"][0]["containerPort"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


# --- Service, autoscaler, disruption budget, Job ------------------------------------------------


def test_services_select_their_pods_and_ports() -> None:
    pods = {w["metadata"]["name"]: w for w in workloads() if w["kind"] == "Deployment"}
    services = [m for m in all_manifests() if m["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"issuer", "acapy", "acapy-admin"}
    for service in services:
        name = service["metadata"]["name"]
        selected = [d for d in pods.values() if selects(service["spec"]["selector"], pod_labels(d))]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} Deployments"
        named = {p["name"]: p["containerPort"] for p in container(selected[0])["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named or port["targetPort"] in named.values(), name
    job = find("Job", "issuer-migrate")
    assert not any(selects(s["spec"]["selector"], pod_labels(job)) for s in services)


def test_autoscaler_targets_the_deployment_by_cpu() -> None:
    hpa = find("HorizontalPodAutoscaler", "issuer")
    deployment = find("Deployment", "issuer")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 2, "a disruption budget needs two to allow a drain"
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # Utilization is of the request, so the request must exist.
    assert container(deployment)["resources"]["requests"]["cpu"]


def test_disruption_budget_covers_the_web_pods_only() -> None:
    pdb = find("PodDisruptionBudget", "issuer")
    selector = pdb["spec"]["selector"]
    assert selects(selector, pod_labels(find("Deployment", "issuer")))
    assert not selects(selector, pod_labels(find("Job", "issuer-migrate")))
    assert not selects(selector, pod_labels(find("Deployment", "acapy")))
    assert pdb["spec"]["maxUnavailable"] == 1 or pdb["spec"].get("minAvailable") == 1
    assert (
        selector["matchLabels"] == find("Deployment", "issuer")["spec"]["selector"]["matchLabels"]
    )


def test_migration_job_runs_alembic_with_the_same_image_and_hardening() -> None:
    job = find("Job", "issuer-migrate")
    deployment = find("Deployment", "issuer")
    spec, web = container(job), container(deployment)
    assert spec["command"] == ["alembic", "upgrade", "head"]
    assert "args" not in spec and spec.get("workingDir", "/app") == "/app"
    assert spec["image"] == web["image"] == "issuer"
    assert spec["securityContext"] == web["securityContext"]
    assert pod_spec(job)["securityContext"] == pod_spec(deployment)["securityContext"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
    # Only the database URL: the Job needs no other secret.
    [env] = spec["env"]
    assert env == {
        "name": "ISSUER_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "issuer-secrets", "key": "ISSUER_DATABASE_URL"}},
    }
    assert "envFrom" not in spec
    # The rollout applies it on its own first: `kubectl apply -k ... -l <component>=migrate`.
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migrate"


# --- ACA-Py ----------------------------------------------------------------------------------


def option_values(argv: list[str]) -> dict[str, list[str]]:
    """``{"--option": [its values]}`` of an ``aca-py`` command line (what precedes the first
    option, ``start``, is left out)."""
    values: dict[str, list[str]] = {}
    current: list[str] | None = None
    for token in argv:
        if token.startswith("--"):
            current = values.setdefault(token, [])
        elif current is not None:
            current.append(token)
    return values


def test_acapy_runs_as_compose_runs_it() -> None:
    """Every option of compose.yaml's acapy command is an argument here or, for secrets and
    settings, its ACAPY_* variable; the secrets never are arguments."""
    acapy = find("Deployment", "acapy")
    spec = container(acapy)
    compose = compose_config()["services"]["acapy"]
    assert spec["image"] == "ghcr.io/openwallet-foundation/acapy-agent:py3.12-1.3.0"
    assert spec["image"] in compose["image"]
    args = spec["args"]
    env = container_env(spec, configmaps(overlay=False), filled_secrets())
    for option in (a for a in compose["command"] if a.startswith("--")):
        variable = "ACAPY_" + option.removeprefix("--").replace("-", "_").upper()
        assert option in args or variable in env, option
    for secret in ("--admin-api-key", "--wallet-key", "--webhook-url"):
        assert secret not in args
    # The same values where both say it, in arguments or in the ConfigMap.
    ours, theirs = option_values(args), option_values(compose["command"])
    for option, values in ours.items():
        assert theirs[option] == values, option
    assert [env["ACAPY_LABEL"]] == theirs["--label"]
    assert [env["ACAPY_LOG_LEVEL"]] == theirs["--log-level"]
    assert "--recreate-wallet" not in args and "--auto-provision" in args
    assert args[args.index("--admin") + 1 : args.index("--admin") + 3] == [ALL_INTERFACES, "8031"]
    assert args[args.index("--inbound-transport") + 1 :][:3] == ["http", ALL_INTERFACES, "8030"]
    assert acapy["spec"]["replicas"] == 1 and acapy["spec"]["strategy"]["type"] == "Recreate"


def test_acapy_keeps_its_wallet_on_the_claim() -> None:
    acapy = find("Deployment", "acapy")
    volumes = {v["name"]: v for v in pod_spec(acapy)["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container(acapy)["volumeMounts"]}
    # The image's HOME is /home/aries; ACA-Py keeps the askar wallet in $HOME/.acapy_agent.
    claim = mounts["/home/aries/.acapy_agent"]["persistentVolumeClaim"]["claimName"]
    pvc = find("PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert (
        pod_spec(acapy)["securityContext"]["fsGroup"]
        == pod_spec(acapy)["securityContext"]["runAsUser"]
    )


def test_acapy_shares_the_portals_keys_and_webhook_address() -> None:
    secrets_ = filled_secrets()
    env = container_env(container(find("Deployment", "acapy")), configmaps(overlay=True), secrets_)
    portal = secrets_["issuer-secrets"]
    assert env["ACAPY_ADMIN_API_KEY"] == portal["ISSUER_ACAPY_ADMIN_API_KEY"]
    url, _, key = env["ACAPY_WEBHOOK_URL"].partition("#")
    assert key == portal["ISSUER_WEBHOOK_API_KEY"]
    # http://issuer/webhooks: the Service issuer's port, which leads to the portal's port.
    parts = urlsplit(url)
    service = find("Service", parts.hostname or "")
    port = next(p for p in service["spec"]["ports"] if p["port"] == (parts.port or 80))
    assert port["targetPort"] == "http" and parts.path == "/webhooks"
    # And the portal reaches the admin API through acapy-admin.
    admin = urlsplit(configmaps(overlay=True)["issuer-config"]["ISSUER_ACAPY_ADMIN_URL"])
    admin_service = find("Service", admin.hostname or "")
    assert admin.port == ADMIN_PORT
    assert [p["port"] for p in admin_service["spec"]["ports"]] == [ADMIN_PORT]


def test_admin_port_is_not_exposed() -> None:
    manifests = all_manifests()
    admin_services = set()
    for service in (m for m in manifests if m["kind"] == "Service"):
        ports = service["spec"]["ports"]
        if any(p["port"] == ADMIN_PORT or p["targetPort"] in ("admin", ADMIN_PORT) for p in ports):
            admin_services.add(service["metadata"]["name"])
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
            assert not service["spec"].get("externalIPs")
            assert len(ports) == 1, "the admin API shares its Service with nothing"
    assert admin_services == {"acapy-admin"}
    for ingress in (m for m in manifests if m["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] not in admin_services
    # The NetworkPolicy: 8031 only from the portal's pods, 8030 from anyone.
    policy = find("NetworkPolicy", "acapy")
    assert selects(policy["spec"]["podSelector"], pod_labels(find("Deployment", "acapy")))
    assert "Ingress" in policy["spec"]["policyTypes"]
    admin_rules, didcomm_open = [], False
    for rule in policy["spec"]["ingress"]:
        ports = [p["port"] for p in rule.get("ports", [])] or None  # no ports: every port
        if ports is None or ADMIN_PORT in ports:
            admin_rules.append(rule)
        if (ports is None or DIDCOMM_PORT in ports) and not rule.get("from"):
            didcomm_open = True
    assert didcomm_open, "the wallets must reach DIDComm"
    assert admin_rules
    for rule in admin_rules:
        assert rule.get("from"), "a rule without peers admits everyone"
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, "no namespaceSelector, no ipBlock"
            assert selects(peer["podSelector"], pod_labels(find("Deployment", "issuer")))
            assert not selects(peer["podSelector"], pod_labels(find("Job", "issuer-migrate")))


# --- settings ----------------------------------------------------------------------------------


def test_every_setting_is_in_the_configmap_or_the_secret() -> None:
    config = configmaps(overlay=False)["issuer-config"]
    secret = secret_examples()["issuer-secrets"]
    assert not set(config) & set(secret)
    known: set[str] = set()
    for name, info in Settings.model_fields.items():
        names = setting_env_names(name, info)
        known |= set(names)
        in_config, in_secret = set(names) & set(config), set(names) & set(secret)
        if name in LEFT_TO_IMAGE:
            assert not in_config | in_secret, f"{names[0]} would hide the image's value"
        elif name in SECRET_SETTINGS:
            assert len(in_secret) == 1 and not in_config, f"{names[0]} belongs in the Secret"
        else:
            assert len(in_config) == 1 and not in_secret, f"{names[0]} belongs in the ConfigMap"
    assert not (set(config) | set(secret)) - known, "keys that no setting reads"
    assert set(Settings.model_fields) >= SECRET_SETTINGS | LEFT_TO_IMAGE
    # ...and the image does set what is left to it.
    assert any(k == "ENV" and "ISSUER_GIT_REVISION=" in a for k, a in final_stage())


def test_the_secret_examples_hold_no_secret() -> None:
    examples = secret_examples()
    for data in examples.values():
        assert all(value == "" for value in data.values()), "an example is not a secret store"
    marked = set()
    for files in generator_files(OVERLAY, "secretGenerator").values():
        marked |= {k for f in files for k in required_keys(example_of(f))}
    assert marked == REQUIRED_SECRETS
    assert examples["acapy-secrets"].keys() == {"ACAPY_WALLET_KEY"}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``Settings`` as the pod's process builds it: from ``env`` only (no ``.env`` file)."""
    for key in list(os.environ):
        if key.upper().startswith("ISSUER_") or key.upper() == "PORT":
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


def test_the_production_pod_environment_makes_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets_ = filled_secrets()
    spec = container(find("Deployment", "issuer"))
    settings = settings_from(container_env(spec, configmaps(overlay=True), secrets_), monkeypatch)
    portal = secrets_["issuer-secrets"]
    assert settings.env.value == "production" and settings.port == 5000
    assert settings.secret_key == portal["ISSUER_SECRET_KEY"]
    assert settings.is_postgres and settings.agent == "acapy"
    assert settings.acapy_admin_api_key == portal["ISSUER_ACAPY_ADMIN_API_KEY"]
    assert settings.force_https and settings.trusted_proxies
    assert settings.public_base_url.startswith("https://")
    assert settings.log_format == "json"
    # Defaults kept where the value is empty (env_ignore_empty): derived, or off.
    assert settings.oidc_providers == [] and settings.redis_url == ""


def test_the_examples_as_they_are_do_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = container(find("Deployment", "issuer"))
    env = container_env(spec, configmaps(overlay=True), secret_examples())
    with pytest.raises(ValidationError, match="ISSUER_SECRET_KEY"):
        settings_from(env, monkeypatch)


def test_the_overlay_matches_the_ingress() -> None:
    config = configmaps(overlay=True)
    ingress = find("Ingress", "issuer")
    hosts = {
        rule["host"]: rule["http"]["paths"][0]["backend"]["service"]
        for rule in ingress["spec"]["rules"]
    }
    portal = urlsplit(config["issuer-config"]["ISSUER_PUBLIC_BASE_URL"])
    agent = urlsplit(config["acapy-config"]["ACAPY_ENDPOINT"])
    assert portal.scheme == agent.scheme == "https"
    assert hosts[portal.hostname or ""] == {"name": "issuer", "port": {"name": "http"}}
    assert hosts[agent.hostname or ""] == {"name": "acapy", "port": {"name": "didcomm"}}
    [tls] = ingress["spec"]["tls"]
    assert set(tls["hosts"]) == set(hosts)
    annotations = ingress["metadata"]["annotations"]
    # Websockets stay open longer than ingress-nginx's default 60 s of silence.
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    # Pictures (up to 2 MiB + form overhead) pass ingress-nginx's default limit of 1 MiB.
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "3m"


# --- the overlay rendered by kubectl's kustomize -----------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """``kubectl kustomize overlays/production`` of a copy whose secret files are filled in."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the checks on the files themselves still run")
    copy = tmp_path_factory.mktemp("k8s") / "kubernetes"
    # Without the filled-in secret files of whoever runs the tests.
    shutil.copytree(
        K8S, copy, ignore=lambda _, names: [n for n in names if f"{n}.example" in names]
    )
    for name, data in filled_secrets().items():
        [path] = generator_files(OVERLAY, "secretGenerator")[name]
        lines = [f"{k}={v}" for k, v in data.items()]
        (copy / path.relative_to(K8S)).write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [kubectl, "kustomize", str(copy / OVERLAY.relative_to(K8S))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_rendered_overlay_is_valid_and_in_one_namespace(rendered: list[Manifest]) -> None:
    kinds = sorted(m["kind"] for m in rendered)
    assert kinds.count("Secret") == 2 and kinds.count("ConfigMap") == 2
    for manifest in rendered:
        kubernetes_validate.validate(manifest, TARGET, strict=True)
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == NAMESPACE, manifest["metadata"]["name"]


def references(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """``(kind, name)`` of every ConfigMap, Secret and claim a pod spec refers to."""
    found = set()
    for box in spec["containers"]:
        for source in box.get("envFrom", []):
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if key in source:
                    found.add((kind, source[key]["name"]))
        for item in box.get("env", []):
            for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if key in item.get("valueFrom", {}):
                    found.add((kind, item["valueFrom"][key]["name"]))
    for volume in spec.get("volumes", []):
        if "persistentVolumeClaim" in volume:
            found.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    return found


def test_rendered_references_resolve(rendered: list[Manifest]) -> None:
    objects = {(m["kind"], m["metadata"]["name"]): m for m in rendered}
    for workload in workloads(rendered):
        for reference in references(pod_spec(workload)):
            assert reference in objects, f"{workload['metadata']['name']} needs {reference}"
        for box in pod_spec(workload)["containers"]:
            for item in box.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = objects[("Secret", ref["name"])]
                    assert ref["key"] in secret["data"], ref
    # Generated names carry a hash of the content: a change rolls the pods.
    for kind, name in objects:
        if kind in ("ConfigMap", "Secret"):
            assert re.fullmatch(r"(issuer|acapy)-(config|secrets)-[a-z0-9]{10}", name), name
    images = {
        container(w)["image"] for w in workloads(rendered) if w["metadata"]["name"] != "acapy"
    }
    assert images == {"registry.example.org/issuer:1.0.0"}


def test_rendered_rollout_steps_are_self_contained(rendered: list[Manifest]) -> None:
    """README's rollout applies ``-l app.kubernetes.io/component=config``, then ``=migrate``,
    then everything: the first two must hold what the Job needs, and nothing that serves."""

    def component(value: str) -> list[Manifest]:
        return [
            m
            for m in rendered
            if m["metadata"].get("labels", {}).get("app.kubernetes.io/component") == value
        ]

    config, migrate = component("config"), component("migrate")
    assert {m["kind"] for m in config} == {"Namespace", "ConfigMap", "Secret"}
    assert [m["kind"] for m in migrate] == ["Job"]
    present = {(m["kind"], m["metadata"]["name"]) for m in config}
    assert references(pod_spec(migrate[0])) <= present


# --- the commands, run ---------------------------------------------------------------------


def sqlite_head(path: Path) -> str | None:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return str(rows[0][0]) if rows else None


def venv_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` alone, plus a PATH that finds this virtualenv's tools and the system's."""
    bin_dir = Path(sys.executable).parent
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), **env}


def test_the_job_and_the_deployment_commands_run(tmp_path: Path) -> None:
    """The Job's command migrates with nothing but its environment; the Deployment's command
    then empties a stale metrics directory and serves: alive, not ready while the agent is
    down, /metrics from every worker, and a SIGTERM ends it within the grace period.

    The repository root stands in for the image's /app (alembic.ini, alembic/,
    hypercorn.toml); the bind address is narrowed to loopback for the test.
    """
    database = tmp_path / "issuer.db"
    secrets_ = filled_secrets(ISSUER_DATABASE_URL=f"sqlite+aiosqlite:///{database}")
    job = container(find("Job", "issuer-migrate"))
    migrated = subprocess.run(
        job["command"],
        env=venv_env(tmp_path, container_env(job, configmaps(overlay=False), secrets_)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    head = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
    assert sqlite_head(database) == head

    deployment = find("Deployment", "issuer")
    spec = container(deployment)
    port, closed = free_port(), free_port()
    config = configmaps(overlay=False)
    config["issuer-config"] |= {
        "PORT": str(port),
        "ISSUER_ACAPY_ADMIN_URL": f"http://127.0.0.1:{closed}",
    }
    env = container_env(spec, config, secrets_)
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    # What a killed container leaves behind: garbage prometheus-client could not even read.
    (multiproc / "gauge_livesum_7.db").write_bytes(b"\xff" * 64)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    script = spec["command"][2].replace(f'"{ALL_INTERFACES}:', '"127.0.0.1:')
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*spec["command"][:2], script],
            env=venv_env(tmp_path, env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health", proc, log, timeout=60)
        assert not (multiproc / "gauge_livesum_7.db").exists()
        assert http_get(base + spec["livenessProbe"]["httpGet"]["path"])[0] == 200
        status, body = http_get(base + spec["readinessProbe"]["httpGet"]["path"])
        assert status == 503, body
        readiness = json.loads(body)
        assert (readiness["database"], readiness["agent"]) == ("ok", "down"), readiness
        status, body = http_get(base + "/metrics")
        assert status == 200 and b"issuer_http_request_duration_seconds" in body
        # The workers write their figures there now.
        assert list(multiproc.glob("*.db"))
        # What the kubelet does after the preStop sleep: SIGTERM to PID 1, hypercorn itself
        # (the shell exec'd it).
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        drain = spec["lifecycle"]["preStop"]["sleep"]["seconds"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(grace - drain)
    finally:
        stop_group(proc)


@dataclass
class Webhooks:
    """What a loopback receiver got: ``(path, x-api-key header)`` of every POST."""

    port: int = 0
    received: list[tuple[str, str | None]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    """An HTTP server on loopback standing in for the Service "issuer": answers 200 to POSTs."""
    got = Webhooks()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.received.append((self.path, self.headers.get("x-api-key")))
            got.arrived.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    got.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield got
    server.shutdown()
    server.server_close()
    thread.join(5)


def acapy_process(
    tmp_path: Path, env: dict[str, str], inbound: int, admin: int
) -> tuple[subprocess.Popen[bytes], Path]:
    """ACA-Py with the Deployment's arguments, its listeners moved to loopback ports."""
    args = list(container(find("Deployment", "acapy"))["args"])
    # --inbound-transport http HOST PORT, --admin HOST PORT
    for option, offset, port in (("--inbound-transport", 2, inbound), ("--admin", 1, admin)):
        at = args.index(option) + offset
        assert args[at] == ALL_INTERFACES, args[at:]
        args[at : at + 2] = ["127.0.0.1", str(port)]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    log = tmp_path / "acapy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [acapy_binary(), *args],
            # HOME as in the image: the wallet goes to $HOME/.acapy_agent, the mounted claim.
            env={"PATH": "/usr/bin:/bin", "HOME": str(home), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


@pytest.mark.acapy
def test_acapy_starts_from_the_manifest(tmp_path: Path, webhooks: Webhooks) -> None:
    """The Deployment's arguments plus the environment its ConfigMap and Secrets give it: the
    admin API wants the portal's key, the label and endpoint are the ConfigMap's, the wallet
    lands on the claim's path, and webhooks carry the portal's webhook key."""
    if not Path(acapy_binary()).exists():
        raise RuntimeError(f"ACA-Py is not installed at {acapy_binary()}: run `make acapy`")
    inbound, admin = free_port(), free_port()
    config = configmaps(overlay=False)
    config["acapy-config"]["ACAPY_ENDPOINT"] = f"http://127.0.0.1:{inbound}"
    secrets_ = filled_secrets()
    env = container_env(container(find("Deployment", "acapy")), config, secrets_)
    # The Service "issuer" is this receiver here.
    env["ACAPY_WEBHOOK_URL"] = env["ACAPY_WEBHOOK_URL"].replace(
        "http://issuer/", f"http://127.0.0.1:{webhooks.port}/"
    )
    proc, log = acapy_process(tmp_path, env, inbound, admin)
    try:
        url = f"http://127.0.0.1:{admin}"
        deadline = time.monotonic() + 60
        while http_status(f"{url}/status/ready") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ACA-Py did not become ready:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        assert http_get(f"{url}/status/config")[0] == 401
        key = {"X-API-Key": secrets_["issuer-secrets"]["ISSUER_ACAPY_ADMIN_API_KEY"]}
        status, body = http_get(f"{url}/status/config", key)
        assert status == 200
        settings = json.loads(body)["config"]
        assert settings["default_label"] == config["acapy-config"]["ACAPY_LABEL"]
        assert settings["default_endpoint"] == f"http://127.0.0.1:{inbound}"
        assert settings["wallet.name"] == "issuer" and settings["wallet.type"] == "askar"
        assert (tmp_path / "home" / ".acapy_agent" / "wallet" / "issuer").is_dir()
        request = urllib.request.Request(
            f"{url}/out-of-band/create-invitation",
            data=json.dumps(
                {"handshake_protocols": ["https://didcomm.org/didexchange/1.1"]}
            ).encode(),
            headers={**key, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert webhooks.arrived.wait(10), "no webhook arrived"
        path, api_key = webhooks.received[0]
        assert path.startswith("/webhooks/topic/")
        assert api_key == secrets_["issuer-secrets"]["ISSUER_WEBHOOK_API_KEY"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                stop_group(proc)


def http_status(url: str) -> int | None:
    try:
        return http_get(url)[0]
    except OSError:
        return None


@pytest.mark.acapy
@pytest.mark.parametrize("missing", ["ISSUER_ACAPY_ADMIN_API_KEY", "ACAPY_WALLET_KEY"])
def test_acapy_refuses_to_start_with_an_example_value(tmp_path: Path, missing: str) -> None:
    """A REQUIRED secret left as the example has it (empty) stops ACA-Py; it never starts
    with an open admin API or an unencrypted wallet."""
    if not Path(acapy_binary()).exists():
        raise RuntimeError(f"ACA-Py is not installed at {acapy_binary()}: run `make acapy`")
    secrets_ = filled_secrets()
    for data in secrets_.values():
        if missing in data:
            data[missing] = ""
    env = container_env(container(find("Deployment", "acapy")), configmaps(overlay=False), secrets_)
    proc, log = acapy_process(tmp_path, env, free_port(), free_port())
    try:
        assert proc.wait(60) != 0
    finally:
        stop_group(proc)
    assert "must be" in log.read_text(errors="replace")
