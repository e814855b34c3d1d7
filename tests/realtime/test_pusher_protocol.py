"""The Pusher Channels protocol (v7) over the app's websockets, with a raw client (the
``websockets`` library), and the HTTP Events API with Pusher's official Python library."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pusher
import pytest
import websockets

from tests.realtime.conftest import Served, socket


def official(served: Served, **kwargs: Any) -> pusher.Pusher:
    app = served.pusher
    settings = {"app_id": app.app_id, "key": app.key, "secret": app.secret}
    return pusher.Pusher(
        **{**settings, **kwargs}, host="127.0.0.1", port=served.port, ssl=False, timeout=10
    )


async def test_connection_ping_and_a_public_channel(served: Served) -> None:
    async with socket(served) as client:
        assert "." in client.socket_id
        await client.send("pusher:ping", {})
        assert (await client.receive())["event"] == "pusher:pong"
        await client.send("pusher:subscribe", {"channel": "news"})
        succeeded = await client.receive()
        assert succeeded == {
            "event": "pusher_internal:subscription_succeeded", "channel": "news", "data": {},
        }  # fmt: skip
        # The official library triggers through the signed Events API.
        await asyncio.to_thread(official(served).trigger, "news", "headline", {"title": "hi"})
        event = await client.receive()
        assert event == {"event": "headline", "channel": "news", "data": {"title": "hi"}}
        channels = await asyncio.to_thread(official(served).channels_info, "ne")
        assert channels == {"channels": {"news": {}}}


async def test_events_api_signatures_are_checked(served: Served) -> None:
    wrong = official(served, secret="not-the-secret")
    with pytest.raises(pusher.errors.PusherBadAuth):
        await asyncio.to_thread(wrong.trigger, "news", "headline", {})
    # An old timestamp, correctly signed otherwise, is refused too.
    app = served.pusher
    body = json.dumps({"name": "headline", "channels": ["news"], "data": "{}"}).encode()
    path = f"/apps/{app.app_id}/events"
    import hashlib
    import hmac

    params = {
        "auth_key": app.key, "auth_timestamp": str(int(time.time()) - 601),
        "auth_version": "1.0", "body_md5": hashlib.md5(body, usedforsecurity=False).hexdigest(),
    }  # fmt: skip
    signed = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    signature = hmac.new(
        app.secret.encode(), f"POST\n{path}\n{signed}".encode(), hashlib.sha256
    ).hexdigest()
    answer = await served.http.post(
        path, content=body, params={**params, "auth_signature": signature},
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 401 and answer.json()["error"] == "timestamp_expired"
    fresh = {**params, "auth_timestamp": str(int(time.time()))}
    signed = "&".join(f"{k}={v}" for k, v in sorted(fresh.items()))
    signature = hmac.new(
        app.secret.encode(), f"POST\n{path}\n{signed}".encode(), hashlib.sha256
    ).hexdigest()
    answer = await served.http.post(
        path, content=body, params={**fresh, "auth_signature": signature},
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text


async def test_private_channels_need_the_owners_signature(served: Served) -> None:
    token, entity = await served.account("ada@example.test")
    other, _ = await served.account("bob@example.test")
    channel = f"private-person-{entity}"
    async with socket(served) as client:
        form = {"socket_id": client.socket_id, "channel_name": channel}
        auth = await served.http.post(
            "/pusher/auth", data=form, headers={"Authorization": f"Bearer {token}"}
        )
        assert auth.status_code == 200, auth.text
        refused = await served.http.post(
            "/pusher/auth", data=form, headers={"Authorization": f"Bearer {other}"}
        )
        assert refused.status_code == 403
        assert (await served.http.post("/pusher/auth", data=form)).status_code == 401
        await client.send("pusher:subscribe", {"channel": channel, "auth": "k:forged"})
        error = await client.receive()
        assert error["event"] == "pusher:subscription_error" and error["data"]["status"] == 401
        await client.send("pusher:subscribe", {"channel": channel, "auth": auth.json()["auth"]})
        assert (await client.receive())["event"] == "pusher_internal:subscription_succeeded"
        # An entity event caused by an API call arrives, numbered.
        changed = await served.http.post(
            "/update_password",
            json={"existing_password": "correct horse battery staple",
                  "new_password": "another horse battery staple"},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert changed.status_code == 200, changed.text
        event = await client.until("update")
        assert event["channel"] == channel
        assert event["data"]["type"] == "password.changed" and event["data"]["entity"] == "person"
        assert isinstance(event["data"]["id"], int)
        assert "password" not in json.dumps(event["data"]["data"])


async def test_refusals_use_the_protocols_close_codes(served: Served) -> None:
    url = served.ws_url
    for bad, code in (
        (url.replace(served.pusher.key, "unknown-key"), 4001),
        (url.replace("protocol=7", "protocol=5"), 4007),
    ):
        async with websockets.connect(bad) as connection:
            error = json.loads(await connection.recv())
            assert error["event"] == "pusher:error"
            assert json.loads(error["data"])["code"] == code
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await connection.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    async with websockets.connect(url, origin="https://evil.example") as connection:
        assert json.loads(json.loads(await connection.recv())["data"])["code"] == 4009
