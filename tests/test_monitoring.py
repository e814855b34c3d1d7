"""Monitoring: what the dashboard and the alerts query is what ``GET /metrics`` exports (in one
process and summed over hypercorn workers), and deploy/monitoring's files are valid for the
tools that read them: Prometheus (``promtool``), Grafana's provisioning, Compose.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart

from issuer import create_app
from issuer.issuance.agents.base import ExchangeState, ExchangeStatus
from issuer.issuance.agents.local import free_port
from issuer.services import services_of
from tests.accounts.conftest import PASSWORD, login, register
from tests.fakes import FakeAgent
from tests.issuance.test_portal import ORIGIN, connect, start
from tests.support.servers import ServerProcess, stop_gracefully
from tests.test_deploy import DUMMY_SECRETS, compose_command, compose_env, compose_raw, interpolate

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "issuer.json"
PROVISIONING = MONITORING / "grafana" / "provisioning"
# Series Prometheus makes itself, not the app.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE"}
PROMTOOL_HINT = "no promtool; `make browser` installs Debian's prometheus package"

# --- PromQL: the metric names an expression selects ------------------------------------------

# Followed by a parenthesised list of label names, not of expressions.
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"offset", "bool", "and", "or", "unless", "inf", "nan"}


def tokens(expr: str) -> list[str]:
    """PromQL's tokens, with strings, label matchers (``{…}``), ranges (``[…]``), numbers and
    durations dropped: identifiers, parentheses and operators remain."""
    found: list[str] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char.isspace():
            i += 1
        elif char in "\"'`":
            i = expr.index(char, i + 1) + 1 if char == "`" else _string_end(expr, i)
        elif char == "{":
            while expr[i] != "}":  # matchers: strings may hold braces
                i = _string_end(expr, i) if expr[i] in "\"'" else i + 1
            i += 1
        elif char == "[":
            i = expr.index("]", i) + 1
        elif char.isdigit() or (char == "." and expr[i + 1 : i + 2].isdigit()):
            while i < len(expr) and (expr[i].isalnum() or expr[i] == "."):
                i += 1  # 0.95, 1e3, 5m, 1h30m
        elif char.isalpha() or char in "_:":
            match = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*").match(expr, i)
            assert match is not None
            found.append(match.group())
            i = match.end()
        else:
            found.append(char)
            i += 1
    return found


def _string_end(expr: str, start: int) -> int:
    quote, i = expr[start], start + 1
    while expr[i] != quote:
        i += 2 if expr[i] == "\\" else 1
    return i + 1


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: not functions or aggregations (followed by ``(``, or
    by ``by``/``without``), keywords, or the label names of ``by (…)``, ``on (…)`` and the
    like."""
    found, parts, i = set(), tokens(expr), 0
    while i < len(parts):
        part = parts[i]
        following = parts[i + 1] if i + 1 < len(parts) else ""
        if part in GROUPING and following == "(":
            i = parts.index(")", i) + 1
            continue
        name = re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", part) and part not in KEYWORDS
        if name and following not in ("(", "by", "without"):
            found.add(part)
        i += 1
    return found


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{status=~"5..",x="}"}[5m])))'
    ) == {"a_bucket"}
    assert metric_names("sum(rate(b_total[$__rate_interval])) / sum without (job) (c) * 60") == {
        "b_total",
        "c",
    }
    assert metric_names('up{job="issuer"} == 0 and on (instance) d offset 1h30m > bool 1e3') == {
        "up",
        "d",
    }


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    return [t["expr"] for p in panels if p["type"] != "row" for t in p["targets"]]


def alert_queries() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def queried_metrics() -> set[str]:
    names = {n for expr in dashboard_queries() + alert_queries() for n in metric_names(expr)}
    return names - SYNTHETIC


# --- what /metrics exports -------------------------------------------------------------------


def families(body: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(body)}


def family_of(name: str, exported: dict[str, Any]) -> Any:
    """The family a queried name belongs to: a histogram's ``_bucket``/``_sum``/``_count``, a
    counter's ``_total``, else the name itself; ``None`` if /metrics has no such samples."""
    series = {"_bucket": {"histogram"}, "_sum": {"histogram", "summary"},
              "_count": {"histogram", "summary"}, "_total": {"counter"}}  # fmt: skip
    for suffix, kinds in series.items():
        base = name.removesuffix(suffix)
        if base != name and base in exported and exported[base].type in kinds:
            return exported[base]
    family = exported.get(name)
    if family is None or family.type in ("histogram", "counter"):
        return None  # a histogram or counter is only queried through its suffixed series
    return family


def value(exported: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    found = [s.value for s in exported[family].samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, exported[family].samples)
    return float(found[0])


def before(sample: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(sample, labels) or 0.0


@pytest.fixture
def overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Emails go to a port where nothing listens and are given up at once; two logins per
    account and address."""
    return {
        **overrides, "smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_security": "none",
        "smtp_timeout": 2.0, "outbox_max_attempts": 1, "login_limit_per_account": 2,
        "argon2_memory_kib": 1024, "argon2_time_cost": 1,
    }  # fmt: skip


async def scrape(client: Any) -> dict[str, Any]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return families(await response.get_data(as_text=True))


async def issue_a_credential(app: Quart, client: Any, fake_agent: FakeAgent) -> None:
    """The portal's flow to ``accepted``, its websocket open meanwhile."""
    session_id, csrf = await start(client)
    async with client.websocket(f"/ws/issuance/{session_id}", headers=ORIGIN) as ws:
        assert (await ws.receive_json())["state"] == "invited"
        await connect(app, fake_agent, session_id)
        form = {"prename": "Ada", "surname": "Lovelace", "institution": "ETH", "csrf_token": csrf}
        response = await client.post("/name", form=form, headers={"Accept": "application/json"})
        assert response.status_code == 200, await response.get_data(as_text=True)
        row = await services_of(app).issuance.get(session_id)
        fake_agent.exchanges[row.exchange_id] = ExchangeState(ExchangeStatus.ACCEPTED)
        await services_of(app).issuance.reconcile(row)


async def test_every_queried_metric_is_exported(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    outcomes = {o: before("issuer_logins_total", outcome=o) for o in ("success", "bad_credentials",
                                                                       "rate_limited")}  # fmt: skip
    accepted = before("issuer_issuance_duration_seconds_count", state="accepted")
    assert (await register(client, "alice", email="alice@example.org")).status_code == 200
    assert (await login(client, "alice", "wrong password")).status_code == 401
    assert (await login(client, "alice", PASSWORD)).status_code == 200
    assert (await login(client, "alice", PASSWORD)).status_code == 429
    async with asyncio.timeout(20):
        await services_of(app).dispatcher.drain()  # the email fails: nothing listens
    await issue_a_credential(app, client, fake_agent)
    async with client.websocket(f"/app/{services_of(app).hub.app.key}?protocol=7") as ws:
        assert json.loads(await ws.receive())["event"] == "pusher:connection_established"

    exported = await scrape(client)
    missing = {n for n in queried_metrics() if family_of(n, exported) is None}
    assert not missing, f"queried but not exported: {sorted(missing)}"
    for name in queried_metrics():
        family = family_of(name, exported)
        assert any(s.name == name for s in family.samples), f"{name}: no samples"
    for outcome, count in outcomes.items():
        assert value(exported, "issuer_logins", "issuer_logins_total", outcome=outcome) == count + 1
    duration = "issuer_issuance_duration_seconds"
    assert value(exported, duration, f"{duration}_count", state="accepted") == accepted + 1
    assert value(exported, "issuer_outbox_messages", "issuer_outbox_messages", kind="email",
                 status="failed") == 1  # fmt: skip
    for family in ("issuer_db_pool_size", "issuer_ready"):
        assert exported[family].samples
    ready = {s.labels["component"]: s.value for s in exported["issuer_ready"].samples}
    assert ready == {"database": 1.0, "agent": 1.0}


async def test_open_websockets_count_pusher_and_issuance_sockets(app: Quart, client: Any) -> None:
    kinds = ("issuance", "pusher")
    counts = {kind: before("issuer_open_websockets", kind=kind) for kind in kinds}
    session_id, _ = await start(client)
    async with (
        client.websocket(f"/ws/issuance/{session_id}", headers=ORIGIN) as issuance,
        client.websocket(f"/app/{services_of(app).hub.app.key}?protocol=7") as pusher,
    ):
        await issuance.receive_json()
        await pusher.receive()
        exported = await scrape(client)
        for kind in kinds:
            open_now = value(
                exported, "issuer_open_websockets", "issuer_open_websockets", kind=kind
            )
            assert open_now == counts[kind] + 1, kind


async def test_readiness_metric_follows_the_database_and_the_agent(
    overrides: dict[str, Any],
) -> None:
    agent = FakeAgent()
    agent.down = True
    app = create_app(overrides, agent=agent)
    async with app.test_app() as test_app:
        exported = await scrape(test_app.test_client())
    assert value(exported, "issuer_ready", "issuer_ready", component="agent") == 0
    assert value(exported, "issuer_ready", "issuer_ready", component="database") == 1
    dead = {**overrides, "database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/x"}
    app = create_app(dead, agent=FakeAgent())
    async with app.test_app() as test_app:
        exported = await scrape(test_app.test_client())
    assert value(exported, "issuer_ready", "issuer_ready", component="database") == 0
    assert value(exported, "issuer_ready", "issuer_ready", component="agent") == 1


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.postgres
def test_two_workers_export_pool_and_backlog_in_multiprocess_mode(
    postgresql_url: str, tmp_path: Path
) -> None:
    """hypercorn with two workers and ``PROMETHEUS_MULTIPROC_DIR``: each worker writes its pool
    figures by itself (read here from the directory, before any scrape), /metrics sums them,
    and the backlog and readiness are there."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {
        "ISSUER_ENV": "test", "ISSUER_DATABASE_URL": postgresql_url,
        "ISSUER_DATABASE_POOL_SIZE": "3", "ISSUER_SWEEP_INTERVAL": "3600",
        "ISSUER_LOG_LEVEL": "WARNING", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }  # fmt: skip
    server = ServerProcess(free_port(), env, tmp_path / "server.log", workers=2)
    server.start()
    files = CollectorRegistry()
    MultiProcessCollector(files, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    try:
        deadline = time.monotonic() + 30
        while files.get_sample_value("issuer_db_pool_size") != 6:  # both workers started
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.2)
        for _ in range(4):
            fetch(f"{server.url}/health")
        exported = families(fetch(f"{server.url}/metrics"))
    finally:
        stop_gracefully(server)
    assert value(exported, "issuer_db_pool_size", "issuer_db_pool_size") == 6
    assert exported["issuer_db_pool_checked_out"].samples
    assert value(exported, "issuer_ready", "issuer_ready", component="database") == 1
    assert value(exported, "issuer_ready", "issuer_ready", component="agent") == 0  # none set
    backlog = {
        (s.labels["kind"], s.labels["status"]) for s in exported["issuer_outbox_messages"].samples
    }
    assert backlog == {(k, s) for k in ("email", "event") for s in ("pending", "failed")}
    health = [s.value for s in exported["issuer_http_request_duration_seconds"].samples
              if s.name.endswith("_count") and s.labels["route"] == "/health"]  # fmt: skip
    assert sum(health) >= 4


# --- Prometheus' files, checked by promtool ----------------------------------------------------


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip(PROMTOOL_HINT)
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_prometheus_config_and_rules_are_valid(tmp_path: Path) -> None:
    # The token file exists in the container (compose.yaml writes it); promtool wants it too.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "metrics_token").write_text("")
    checked = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = re.search(r"(\d+) rules found", checked.stdout + checked.stderr)
    assert found and int(found.group(1)) == len(alert_queries()), checked.stdout
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["app:5000"]}]
    assert job["authorization"]["credentials_file"] == "secrets/metrics_token"


def test_alerts_fire_as_their_tests_say() -> None:
    tested = promtool("test", "rules", "alerts_test.yml", cwd=MONITORING)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel's query, with Grafana's ``$__rate_interval`` as 5m, as a recording rule."""
    rules = [
        {"record": f"issuer:panel_query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_queries())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    checked = promtool("check", "rules", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- Grafana and Compose -----------------------------------------------------------------------


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "issuer.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    grafana = compose_raw()["services"]["grafana"]
    mounts = {v.split(":")[1]: v for v in grafana["volumes"]}
    assert mounts[provider["options"]["path"]].startswith("./deploy/monitoring/grafana/dashboards:")
    assert mounts["/etc/grafana/provisioning"].endswith(":ro")

    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == source["uid"]
                                        for t in panel["targets"]), panel["title"]  # fmt: skip
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("request rate", "errors", "latency", "websockets", "issuance", "outbox",
                  "login", "pool"):  # fmt: skip
        assert topic in titles, topic


def test_compose_monitoring_profile(tmp_path: Path) -> None:
    services = compose_raw()["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    for service in (prometheus, grafana):
        assert service["profiles"] == ["monitoring"]
        assert re.search(r":v?\d+\.\d+\.\d+$", service["image"]), service["image"]
    assert "ports" not in prometheus, "Prometheus stays on the internal network"
    assert grafana["ports"] == ["${GRAFANA_HTTP_PORT:-3000}:3000"]
    assert all(v.endswith(":ro") for v in prometheus["volumes"] if v.startswith("./"))
    # The token is written where prometheus.yml's relative credentials_file points.
    assert "> /etc/prometheus/secrets/metrics_token" in prometheus["command"][0]
    assert any(t.startswith("/etc/prometheus/secrets:") for t in prometheus["tmpfs"])

    # Grafana refuses to start without an admin password (its image's /run.sh stands in).
    guard = interpolate(grafana["command"][0], {}).replace("exec /run.sh", "exec true")
    for password, code in (("", 1), ("s3cret", 0)):
        ran = subprocess.run(
            ["sh", "-c", guard], env={"GF_SECURITY_ADMIN_PASSWORD": password},
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert ran.returncode == code, ran.stderr
        assert ("GRAFANA_ADMIN_PASSWORD" in ran.stderr) == (code == 1)

    compose = compose_command()
    if compose is None:
        pytest.skip("no docker-compose to validate the profile with")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        [*compose, "--env-file", str(empty), "--project-directory", str(ROOT), "-f",
         str(ROOT / "compose.yaml"), "--profile", "monitoring", "config", "--quiet"],
        capture_output=True, text=True, env=compose_env(**DUMMY_SECRETS), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
