"""Deployment artefacts: compose.yaml, the Dockerfile, hypercorn.toml and the migrations.

No Docker engine is needed. ``docker-compose config`` interpolates and validates compose.yaml
offline; without docker-compose the file is checked against a local copy of the Compose
Specification schema if one exists (nothing is downloaded), and the ``${VAR:?}`` guards are
checked by interpolating the file here.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from hypercorn.config import Config as HypercornConfig
from sqlalchemy import MetaData, create_engine
from sqlalchemy.ext.asyncio import create_async_engine

import issuer
from issuer.config import Settings
from issuer.db import load_models

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HYPERCORN_TOML = ROOT / "hypercorn.toml"

# compose.yaml must refuse to start without each of these (``${VAR:?message}``).
REQUIRED_SECRETS = (
    "ISSUER_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "ACAPY_ADMIN_API_KEY",
    "ACAPY_WALLET_KEY",
    "ISSUER_WEBHOOK_API_KEY",
)
DUMMY_SECRETS = {name: f"dummy-{name.lower().replace('_', '-')}" for name in REQUIRED_SECRETS}
# Every variable compose.yaml reads, so the caller's environment cannot leak in.
COMPOSE_VARIABLES = (
    *REQUIRED_SECRETS,
    "ACAPY_IMAGE",
    "ACAPY_LABEL",
    "ACAPY_ENDPOINT",
    "ISSUER_IMAGE",
    "ISSUER_PUBLIC_BASE_URL",
    "ISSUER_ALLOWED_ORIGINS",
    "ISSUER_DEFAULT_LANGUAGE",
    "ISSUER_LOG_LEVEL",
    "ISSUER_HTTP_PORT",
    "WEB_CONCURRENCY",
    "ISSUER_METRICS_TOKEN",
)
# Where a Compose Specification schema may already be on the machine (never downloaded).
LOCAL_SCHEMAS = (
    ROOT / "tests" / "data" / "compose-spec.json",
    Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json"),
)
APT_HINT = "apt-get install -y docker-compose"


# --- compose.yaml --------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    """``docker-compose`` (v1, Debian's package) or the ``docker compose`` v2 plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def compose_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    env.pop("COMPOSE_FILE", None)
    env.pop("COMPOSE_PROJECT_NAME", None)
    env.update(values)
    return env


def run_compose_config(
    compose: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    # An empty --env-file: a developer's .env (ISSUER_* for `make run`) must not satisfy guards.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return subprocess.run(
        [
            *compose,
            "--env-file",
            str(empty),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (``${A}``, ``${A:-d}``, ``${A-d}``, ``${A:?e}``, ``$$``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        missing = current is None or (current == "" and op in (":-", ":?"))
        if op in ("?", ":?") and missing:
            raise MissingVariable(f"{name}: {arg}")
        if op in ("-", ":-") and missing:
            return arg
        return current or ""

    return VARIABLE.sub(replace, value)


def compose_raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def compose_config() -> dict[str, Any]:
    """compose.yaml interpolated with the dummy secrets and defaults for everything else."""
    resolved = interpolate(compose_raw(), DUMMY_SECRETS)
    assert isinstance(resolved, dict)
    return resolved


def local_compose_schema() -> dict[str, Any] | None:
    candidates = list(LOCAL_SCHEMAS)
    spec = importlib.util.find_spec("compose")  # PyPI's docker-compose ships the schema too
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "config" / "compose_spec.json")
    for path in candidates:
        if path.is_file():
            loaded = json.loads(path.read_text())
            assert isinstance(loaded, dict)
            return loaded
    return None


def test_compose_file_is_valid(tmp_path: Path) -> None:
    compose = compose_command()
    if compose is not None:
        result = run_compose_config(compose, compose_env(**DUMMY_SECRETS), tmp_path)
        assert result.returncode == 0, result.stderr
        return
    # Fallback: the Compose Specification's JSON schema, if this machine has a copy.
    schema = local_compose_schema()
    if schema is None:
        pytest.skip(f"neither docker-compose nor a local Compose schema; `{APT_HINT}`")
    jsonschema = pytest.importorskip("jsonschema", reason=f"no jsonschema; `{APT_HINT}`")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose_config()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_compose_refuses_to_start_without_each_secret(
    tmp_path: Path, secret: str, how: str
) -> None:
    values = {k: v for k, v in DUMMY_SECRETS.items() if k != secret}
    if how == "empty":
        values[secret] = ""
    compose = compose_command()
    if compose is not None:
        result = run_compose_config(compose, compose_env(**values), tmp_path)
        assert result.returncode != 0, f"compose accepted a config without {secret}"
        assert secret in result.stderr
    else:
        with pytest.raises(MissingVariable, match=secret):
            interpolate(compose_raw(), values)


def test_compose_stack_is_wired_for_production() -> None:
    config = compose_config()
    services = config["services"]
    assert set(services) >= {"db", "acapy", "app"}
    assert set(config["volumes"]) >= {"pgdata", "acapy-wallet"}

    db = services["db"]
    assert db["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in db["volumes"])

    acapy = services["acapy"]
    args = acapy["command"]
    joined = " ".join(args)
    assert args[0] == "start"
    for flag in ("--no-ledger", "--auto-provision", "--inbound-transport", "--endpoint"):
        assert flag in args
    assert "--recreate-wallet" not in joined, "production must keep its wallet"
    assert "--admin-insecure-mode" not in joined
    assert args[args.index("--wallet-type") + 1] == "askar"
    assert args[args.index("--admin-api-key") + 1] == DUMMY_SECRETS["ACAPY_ADMIN_API_KEY"]
    assert args[args.index("--admin") + 2] == "8031"
    webhook = args[args.index("--webhook-url") + 1]
    assert webhook == f"http://app:5000/webhooks#{DUMMY_SECRETS['ISSUER_WEBHOOK_API_KEY']}"
    assert any(v.endswith(":/home/aries/.acapy_agent") for v in acapy["volumes"])
    assert "/status/ready" in " ".join(acapy["healthcheck"]["test"])
    published = " ".join(str(p) for p in acapy.get("ports", []))
    assert "8031" not in published, "the admin API must stay on the internal network"

    app = services["app"]
    assert app["build"] == "."
    env = app["environment"]
    assert env["ISSUER_ENV"] == "production"
    assert env["ISSUER_AGENT"] == "acapy"
    assert env["ISSUER_ACAPY_ADMIN_URL"] == "http://acapy:8031"
    assert env["ISSUER_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@db:5432/" in env["ISSUER_DATABASE_URL"]
    assert env["ISSUER_WEBHOOK_API_KEY"] == DUMMY_SECRETS["ISSUER_WEBHOOK_API_KEY"]
    assert env["ISSUER_ACAPY_ADMIN_API_KEY"] == DUMMY_SECRETS["ACAPY_ADMIN_API_KEY"]
    assert int(env["WEB_CONCURRENCY"]) > 1, "PostgreSQL fans out across workers"
    # Several workers: /metrics must sum them all from a fresh, writable directory.
    multiproc = env["PROMETHEUS_MULTIPROC_DIR"]
    assert any(t.split(":")[0] == multiproc for t in app["tmpfs"])
    assert app["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "acapy": {"condition": "service_healthy"},
    }
    assert "/health" in " ".join(app["healthcheck"]["test"])
    assert any(str(p).endswith(":5000") for p in app["ports"])
    graceful = HypercornConfig.from_toml(HYPERCORN_TOML).graceful_timeout
    assert float(app["stop_grace_period"].rstrip("s")) > graceful

    # The app's settings must accept what compose gives it.
    fields = {
        k.removeprefix("ISSUER_").lower(): v for k, v in env.items() if k.startswith("ISSUER_")
    }
    settings = Settings(_env_file=None, **fields)  # type: ignore[call-arg]
    assert settings.is_postgres
    assert settings.agent == "acapy"


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    buffer = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not buffer):
            continue
        if stripped.startswith("#"):
            continue
        buffer += stripped
        if buffer.endswith("\\"):
            buffer = buffer[:-1].rstrip() + " "
            continue
        keyword, _, arguments = buffer.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        buffer = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed)
    return parsed


def test_dockerfile_is_multi_stage_on_slim_python_311() -> None:
    instructions = dockerfile_instructions()
    args = dict(
        a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a
    )  # global ARGs with defaults
    stages = [a.split() for k, a in instructions if k == "FROM"]
    assert len(stages) >= 2, "multi-stage build expected"
    for base, *rest in stages:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        if rest[-1:] == ["assets"]:  # npm ci of the browser bundles; nothing of it runs
            assert resolved.startswith("node:20"), resolved
        else:
            assert resolved.startswith("python:3.11-slim"), resolved
    assert stages[-1][0] == "${PYTHON_IMAGE}"
    runs = " ".join(a for k, a in instructions if k == "RUN")
    assert "pip install -c requirements.lock ." in runs
    assert "[dev]" not in runs, "no dev extras in the image"
    copied = " ".join(a for k, a in final_stage() if k == "COPY")
    for needed in ("alembic", "alembic.ini", "hypercorn.toml", "--from="):
        assert needed in copied


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    stage = final_stage()
    users = [a for k, a in stage if k == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    healthchecks = [a for k, a in stage if k == "HEALTHCHECK"]
    assert healthchecks and "/health" in healthchecks[-1]
    assert "NONE" not in healthchecks[-1].split()
    assert any(k == "EXPOSE" and "5000" in a.split() for k, a in stage)


def test_dockerfile_migrates_then_execs_hypercorn() -> None:
    stage = final_stage()
    entrypoints = [exec_form(a) for k, a in stage if k == "ENTRYPOINT"]
    commands = [exec_form(a) for k, a in stage if k == "CMD"]
    assert commands, "CMD in exec form expected"
    argv = [*(entrypoints[-1] if entrypoints else []), *commands[-1]]
    assert argv[:2] == ["sh", "-c"], argv
    script = argv[2]
    migrate, serve = script.index("alembic upgrade head"), script.index("exec python")
    assert migrate < serve
    # A failed migration must stop the start: `&&`, not `;`.
    assert script[migrate:serve].replace("alembic upgrade head", "").strip() == "&&"
    hypercorn = shlex.split(script[serve:])[1:]  # after `exec`
    assert hypercorn[:3] == ["python", "-m", "issuer.serve"]  # hypercorn's CLI, a safe master
    assert hypercorn[hypercorn.index("--config") + 1] == "hypercorn.toml"
    assert hypercorn[hypercorn.index("--bind") + 1] == "0.0.0.0:${PORT:-5000}"
    assert hypercorn[-1] == "issuer:create_app()"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            ignored = not negate
    return ignored


def test_build_context_has_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    sources: list[str] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in arguments:
            sources += [a for a in arguments.split()[:-1] if not a.startswith("--")]
    assert "README.md" in sources, "pyproject.toml's readme is needed to build the package"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source, patterns), f"{source} is excluded by .dockerignore"
    for secret_or_bulk in (
        ".env", ".venv", ".venv-acapy", ".git", "issuer.db", "tests", "assets/node_modules",
        "src/issuer/static/vendor",
    ):  # fmt: skip
        assert dockerignored(secret_or_bulk, patterns), f"{secret_or_bulk} is in the context"
    assert dockerignored("src/issuer/__pycache__/app.cpython-311.pyc", patterns)
    assert not dockerignored("src/issuer/templates/issuance/page.html", patterns)


# --- hypercorn.toml ------------------------------------------------------------------------


def test_hypercorn_toml_loads_with_production_settings() -> None:
    raw = HYPERCORN_TOML.read_text()
    config = HypercornConfig.from_toml(HYPERCORN_TOML)
    for key in ("graceful_timeout", "errorlog", "workers", "bind"):
        assert re.search(rf"^{key}\s*=", raw, re.MULTILINE), f"{key} not set in hypercorn.toml"
    assert 0 < config.graceful_timeout <= 30
    # The app writes the access log itself, without secrets in paths (see tests/test_ops.py).
    assert config.accesslog is None
    assert config.workers >= 1
    assert config.bind and all(":" in b for b in config.bind)
    if config.worker_class == "uvloop":
        assert importlib.util.find_spec("uvloop") is not None


# --- migrations ----------------------------------------------------------------------------


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def full_metadata() -> MetaData:
    return load_models()


def test_alembic_env_sees_every_table_without_a_list() -> None:
    """env.py takes its metadata from ``load_models()``, which finds every ``models`` module
    itself: a new feature's tables need no line anywhere else."""
    env_py = (ROOT / "alembic" / "env.py").read_text()
    assert re.search(r"^target_metadata = load_models\(\)$", env_py, re.M), env_py
    modules = [
        m.name
        for m in pkgutil.walk_packages(issuer.__path__, "issuer.")
        if m.name.endswith(".models")
    ]
    tables = load_models().tables
    for name in modules:
        module = importlib.import_module(name)
        defined = {v.__table__.name for v in vars(module).values() if hasattr(v, "__table__")}
        assert defined <= set(tables), (name, defined)


def test_migrations_have_a_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, heads


def test_migrations_round_trip_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "roundtrip.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path}")
    tables = {table.name for table in full_metadata().sorted_tables}

    command.upgrade(config, "head")
    assert sqlite_tables(path) >= tables
    command.downgrade(config, "base")
    assert sqlite_tables(path) <= {"alembic_version"}, "downgrade left tables behind"
    command.upgrade(config, "head")
    assert sqlite_tables(path) >= tables


def test_models_match_migrations_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "check.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path}")
    command.upgrade(config, "head")
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, full_metadata())
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ; run alembic revision --autogenerate: {diff}"
    # The same check through alembic/env.py, as `alembic check` runs it.
    command.check(config)


@pytest.mark.postgres
async def test_models_match_migrations_on_postgresql(postgresql_url: str) -> None:
    metadata = full_metadata()
    engine = create_async_engine(postgresql_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == [], f"models and migrations differ on PostgreSQL: {diff}"
