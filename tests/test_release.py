"""Release metadata: the version and git revision in ``GET /health``, the ``issuer_build_info``
metric (one process and several hypercorn workers), and the image's labels and build args."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart

import issuer.app
from issuer import create_app
from issuer.issuance.agents.local import free_port
from issuer.ops.routes import BUILD_INFO, HEALTH, Health
from issuer.release import UNKNOWN, VERSION, Release, git_revision
from tests.conftest import ROOT
from tests.fakes import FakeAgent
from tests.support.servers import ServerProcess
from tests.test_deploy import dockerfile_instructions, final_stage

REVISION = "3f2c1ab9d0e4c5b6a7f8e9d0c1b2a3f4e5d6c7b8"


def overrides(sqlite_url: str, **settings: Any) -> dict[str, Any]:
    return {
        "env": "test",
        "database_url": sqlite_url,
        "secret_key": secrets.token_urlsafe(32),
        "sweep_interval": 3600,
        "agent": None,
        **settings,
    }


@pytest.fixture
async def released(sqlite_url: str) -> AsyncIterator[Quart]:
    create_app(overrides(sqlite_url, git_revision="older"), agent=FakeAgent())  # built before
    app = create_app(overrides(sqlite_url, git_revision=REVISION), agent=FakeAgent())
    async with app.test_app():
        yield app


def build_info(exposition: str) -> list[tuple[dict[str, str], float]]:
    """The ``issuer_build_info`` samples of a Prometheus text exposition."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(exposition)
        if family.name == "issuer_build_info"
        for sample in family.samples
    ]


# --- where the revision comes from ---------------------------------------------------------


def test_the_revision_comes_from_the_setting_then_the_baked_file(tmp_path: Path) -> None:
    baked = tmp_path / "REVISION"
    assert git_revision("", baked) == UNKNOWN
    baked.write_text("")
    assert git_revision("", baked) == UNKNOWN
    baked.write_text("v0.1.0-3-g3f2c1ab-dirty\n")
    assert git_revision("", baked) == "v0.1.0-3-g3f2c1ab-dirty"
    assert git_revision(f"  {REVISION}\n", baked) == REVISION
    assert Release.current().version == VERSION


@pytest.mark.parametrize("bad", ["a b", "abc;rm -rf /", "<script>", "x" * 129, "-flag", "é"])
def test_a_garbled_revision_stops_the_start(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="ISSUER_GIT_REVISION"):
        git_revision(bad, tmp_path / "none")
    baked = tmp_path / "REVISION"
    baked.write_text(bad)
    with pytest.raises(ValueError, match="REVISION"):
        git_revision("", baked)


def test_create_app_refuses_a_garbled_revision(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="not a git revision"):
        create_app(overrides(sqlite_url, git_revision="two words"), agent=FakeAgent())


def test_release_names() -> None:
    assert Release("0.1.0", "3f2c1ab").name == "0.1.0+3f2c1ab"
    assert Release("0.1.0", UNKNOWN).name == "0.1.0"


def test_one_version_everywhere() -> None:
    assert issuer.app.VERSION == VERSION  # still importable from where it was
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == VERSION
    args = dict(a.split("=", 1) for k, a in dockerfile_instructions() if k == "ARG" and "=" in a)
    assert args["VERSION"] == VERSION


# --- /health and the metric ----------------------------------------------------------------


async def test_health_names_the_build(released: Quart) -> None:
    client = released.test_client()
    first = await client.get("/health")
    assert first.status_code == 200
    assert await first.get_json() == {"status": "ok", "version": VERSION, "revision": REVISION}
    # One answer object, made at start-up and reused.
    built = released.extensions[HEALTH]
    assert isinstance(built, Health)
    assert await (await client.get("/health")).get_json() == built.model_dump()
    assert released.extensions[HEALTH] is built


async def test_health_s_schema_documents_the_build(released: Quart) -> None:
    document = await (await released.test_client().get("/openapi.json")).get_json()
    answer = document["paths"]["/health"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"status", "version", "revision"}


async def test_the_build_info_metric_names_this_build_once(released: Quart) -> None:
    exposition = await (await released.test_client().get("/metrics")).get_data(as_text=True)
    assert build_info(exposition) == [({"version": VERSION, "revision": REVISION}, 1.0)]


def test_the_build_info_metric_across_workers(sqlite_url: str, tmp_path: Path) -> None:
    """Two hypercorn workers in multiprocess mode: one series, value 1, not 2."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {
        "ISSUER_ENV": "test",
        "ISSUER_DATABASE_URL": sqlite_url,
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
        "ISSUER_GIT_REVISION": REVISION,
        "ISSUER_AGENT": "",
        "ISSUER_METRICS_TOKEN": "",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    server = ServerProcess(free_port(), env, tmp_path / "server.log", workers=2).start()
    try:
        # /health answered, so one worker is up; both are once each has written its gauge.
        deadline = time.monotonic() + 60
        written = f"gauge_{BUILD_INFO._multiprocess_mode}_*.db"
        while len(list(multiproc.glob(written))) < 2:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        with urllib.request.urlopen(f"{server.url}/health", timeout=10) as response:
            health = response.read().decode()
    finally:
        server.stop()
    assert build_info(exposition) == [({"version": VERSION, "revision": REVISION}, 1.0)]
    assert f'"revision":"{REVISION}"' in health


# --- the image ----------------------------------------------------------------------------


def test_the_image_is_labelled_and_carries_the_revision() -> None:
    instructions = dockerfile_instructions()
    first_from = next(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    global_args = dict(
        a.split("=", 1) if "=" in a else (a, "") for k, a in instructions[:first_from] if k == "ARG"
    )
    assert global_args["GIT_REVISION"] == "unknown"
    assert global_args["VERSION"] == VERSION
    stage = final_stage()
    declared = {a.split("=", 1)[0] for k, a in stage if k == "ARG"}
    assert {"VERSION", "GIT_REVISION"} <= declared  # global ARGs must be redeclared per stage
    labels = " ".join(a for k, a in stage if k == "LABEL")
    for key, value in (
        ("version", '"$VERSION"'),
        ("revision", '"$GIT_REVISION"'),
        ("title", '"issuer"'),
        ("source", '"$SOURCE_URL"'),
        ("created", '"$CREATED"'),
    ):
        assert f"org.opencontainers.image.{key}={value}" in labels, key
    envs = [a for k, a in stage if k == "ENV"]
    assert "ISSUER_GIT_REVISION=$GIT_REVISION" in envs


def test_the_build_bakes_the_revision_into_the_installed_package(tmp_path: Path) -> None:
    """Runs the build stage's own ``RUN`` line against a stand-in ``issuer`` package."""
    runs = [a for k, a in dockerfile_instructions() if k == "RUN" and "REVISION" in a]
    assert len(runs) == 1, runs
    package = tmp_path / "site" / "issuer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(tmp_path / "site"),
        "GIT_REVISION": REVISION,
    }
    subprocess.run(["sh", "-c", runs[0]], env=env, check=True, timeout=30)
    assert (package / "REVISION").read_text() == f"{REVISION}\n"
    assert git_revision("", package / "REVISION") == REVISION
