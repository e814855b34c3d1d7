"""The MFA challenge's token calls nothing but the second-factor steps (ASVS 7.2.4): every
operation the OpenAPI document says takes a bearer token refuses it, as does every other place
a token goes (the refresh token, the links' tokens)."""

from __future__ import annotations

import re
from typing import Any

from quart import Quart

from tests.accounts.conftest import assert_error, bearer, claims_of
from tests.mfa.conftest import account, challenge, enrol


async def test_the_challenge_token_is_refused_everywhere_else(app: Quart, client: Any) -> None:
    login = await account(client)
    await enrol(client, login["token"])
    token = await challenge(client)
    assert claims_of(token)["typ"] == "mfa"
    document = await (await client.get("/openapi.json")).get_json()
    checked = []
    fresh = app.test_client()  # no challenge cookie, no session
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            schemes = {name for option in operation.get("security", []) for name in option}
            if "bearer" not in schemes:
                continue
            # A value each path parameter's pattern takes (a public id, a provider name).
            # A value each path parameter takes: a row id, a provider name, a public id.
            schemas = {
                p["name"]: p["schema"] for p in operation.get("parameters", []) if p["in"] == "path"
            }

            def value(name: str, schemas: dict[str, Any] = schemas) -> str:
                schema = schemas.get(name, {})
                if schema.get("type") == "integer":
                    return "1"
                return "x" if "[a-z]" in schema.get("pattern", "") else "0" * 32

            url = re.sub(r"\{([^}]+)\}", lambda m: value(m.group(1)), path)
            response = await fresh.open(url, method=method.upper(), json={}, headers=bearer(token))
            await assert_error(response, 401)
            checked.append(f"{method.upper()} {path}")
    assert {"GET /auth/status", "POST /generate_array", "POST /qrcode", "GET /sessions"} <= set(
        checked
    ), checked
    assert len(checked) >= 15, checked
    # Nor is it a refresh token, or the token of an emailed link.
    await assert_error(await fresh.post("/token/refresh", json={"refresh_token": token}), 401)
    response = await fresh.get(f"/verify/{token}/{'0' * 32}")
    assert response.status_code >= 400
    # And it still works where it belongs (the refusals above did not spend it).
    status = (await fresh.post("/login_mfa/passkey/options", json={"mfa_token": token})).status_code
    assert status == 200
