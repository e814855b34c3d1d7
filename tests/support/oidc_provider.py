"""A real OpenID Connect provider for tests: the npm package ``oidc-provider`` on 127.0.0.1.

``tests/support/oidc/provider.mjs`` runs it (pinned in ``tests/support/oidc/package-lock.json``,
installed by ``make test`` or ``npm ci`` in that folder) with one confidential client and an
account store where any login name ``X`` signs in as subject ``X``: email ``X@example.test``,
``email_verified`` true unless ``X`` starts with ``unverified``, name ``X User``, given_name
``X``, family_name ``User``. Scopes ``openid email profile``, their claims in the ID token too,
PKCE (S256) required, RS256 ID tokens signed with a key made at startup (see ``jwks_uri``).

    async with oidc_provider(client_id="portal", client_secret="s3cret",
                             redirect_uris=[f"{app_url}/login/oidc/callback"]) as provider:
        await page.goto(authorization_url_built_from(provider.issuer))
        await sign_in_at_provider(page, "ada")   # the browser is then on the redirect URI

Use 127.0.0.1 (not localhost) for the app under test as well, so the cookies stay same-site,
and a fresh browser context per sign-in (the provider remembers a signed-in browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from playwright.async_api import Page

from tests.support import node as node_support
from tests.support.node import package_ready, require_package

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
PACKAGE = "oidc-provider"
VERSION = "9.13.3"
READY_PREFIX = "ready "
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

TokenAuthMethod = Literal["client_secret_post", "client_secret_basic"]


def node_modules_ready() -> bool:
    """True when the pinned npm package is installed next to this harness."""
    return package_ready(OIDC_DIR, PACKAGE, VERSION)


def require_node_modules() -> None:
    require_package(OIDC_DIR, PACKAGE, VERSION)


def node_binary() -> str:
    return node_support.node_binary("the OIDC provider")


@dataclass
class OidcProvider:
    """A running provider: ``issuer`` is its base URL (discovery at
    ``{issuer}/.well-known/openid-configuration``); ``stderr`` what it has logged so far."""

    issuer: str
    port: int
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    token_auth_method: TokenAuthMethod
    _stderr: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")


async def _collect(stream: asyncio.StreamReader, sink: bytearray) -> None:
    while chunk := await stream.read(65536):
        sink.extend(chunk)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.stdin is not None:
        process.stdin.close()
        with contextlib.suppress(ConnectionError):
            await process.stdin.wait_closed()


@asynccontextmanager
async def oidc_provider(
    *,
    client_id: str,
    client_secret: str,
    redirect_uris: Sequence[str],
    token_auth_method: TokenAuthMethod = "client_secret_post",  # noqa: S107 (a method's name)
    port: int = 0,
    issuer: str | None = None,
) -> AsyncIterator[OidcProvider]:
    """Run ``provider.mjs`` for the duration of the block.

    ``token_auth_method``: ``client_secret_post`` or ``client_secret_basic``. ``port`` 0 picks a
    free one; ``issuer`` defaults to ``http://127.0.0.1:<port>``. Raises ``RuntimeError`` (with
    the provider's stderr) if it exits or is not ready within 20 s.
    """
    require_node_modules()
    env = {
        **os.environ,
        "PORT": str(port),
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": client_secret,
        "REDIRECT_URI": ",".join(redirect_uris),
        "TOKEN_AUTH_METHOD": token_auth_method,
        "NO_COLOR": "1",
    }
    env.pop("ISSUER", None)
    if issuer is not None:
        env["ISSUER"] = issuer
    # stdin stays open while we run: the provider exits when it closes, so it cannot outlive
    # this process even if the block never reaches its cleanup.
    process = await asyncio.create_subprocess_exec(
        node_binary(), str(PROVIDER_SCRIPT),
        cwd=OIDC_DIR, env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    stderr = bytearray()
    stderr_task = asyncio.create_task(_collect(process.stderr, stderr))
    stdout_task: asyncio.Task[None] | None = None
    try:
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
            problem = f"was not ready within {START_TIMEOUT:g} s"
        else:
            problem = f"exited with code {await process.wait()}" if not line else ""
        text = line.decode(errors="replace").strip()
        if not problem and not text.startswith(READY_PREFIX):
            problem = f"printed {text!r} instead of the ready line"
        if problem:
            await _stop(process)
            await asyncio.wait_for(stderr_task, STOP_TIMEOUT)
            raise RuntimeError(
                f"the OIDC provider ({PROVIDER_SCRIPT.name}) {problem}; its stderr:\n"
                + stderr.decode(errors="replace")
            )
        ready = json.loads(text.removeprefix(READY_PREFIX))
        # Nothing else is meant for stdout, but keep the pipe drained all the same.
        stdout_task = asyncio.create_task(_collect(process.stdout, bytearray()))
        yield OidcProvider(
            issuer=ready["issuer"],
            port=int(ready["port"]),
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=list(redirect_uris),
            token_auth_method=token_auth_method,
            _stderr=stderr,
        )
    finally:
        await _stop(process)
        for task in (stderr_task, stdout_task):
            if task is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, STOP_TIMEOUT)


async def sign_in_at_provider(page: Page, login: str) -> None:
    """On the provider's login page: sign in as ``login`` (any password) and consent.

    Returns once the browser has left the provider, i.e. is on its way to (committed to) the
    client's redirect URI with ``code`` and ``state``; wait for that page as usual after it.
    """
    login_field = page.locator('input[name="login"]')
    await login_field.wait_for(state="visible")
    provider_origin = _origin(page.url)
    await login_field.fill(login)
    await page.locator('input[name="password"]').fill("any password")
    await page.get_by_role("button", name="Sign-in").click()
    # The click navigates to the consent page; click() waits for the button to appear there.
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(lambda url: _origin(url) != provider_origin, wait_until="commit")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
