"""``ISSUER_WS_COMPRESSION``: what the websocket handshake's ``101`` answers to a client that
offers permessage-deflate (as every browser does), for each setting, read off the wire."""

from __future__ import annotations

from typing import Any

import pytest
import websockets

from issuer import create_app
from issuer.issuance.agents.local import free_port
from issuer.services import services_of
from tests.support.servers import InProcessServer


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("off", None),
        (
            "no-context-takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        ("on", "permessage-deflate"),
    ],
)
async def test_the_handshake_answers_as_configured(
    overrides: dict[str, Any], setting: str, expected: str | None
) -> None:
    app = create_app({**overrides, "ws_compression": setting})
    port = free_port()
    async with InProcessServer(app, port):
        key = services_of(app).hub.app.key
        url = f"ws://127.0.0.1:{port}/app/{key}?protocol=7"
        async with websockets.connect(url, compression="deflate") as connection:
            answered = connection.response.headers.get("Sec-WebSocket-Extensions")
            await connection.recv()  # pusher:connection_established arrives either way
    if expected is None:
        assert answered is None
    else:  # the parameters agreed, whatever window size the client asked for
        assert answered is not None
        agreed = {p.strip() for p in answered.split(";") if "max_window_bits" not in p}
        assert agreed == {p.strip() for p in expected.split(";")}
    # Back to the default for the tests after this one.
    create_app(overrides)
