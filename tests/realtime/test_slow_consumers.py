"""A listener that never reads is dropped (its queue is bounded) while the others keep
receiving everything; it is told so with close code 4100 (reconnect after a while)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pusher
import websockets

from issuer.services import services_of
from tests.realtime.conftest import serving, socket

QUEUE = 32
BATCH = 5  # events per Events API call (a body stays under 64 KiB): fewer than the queue holds
EVENT_BYTES = 8000


async def test_a_slow_consumer_is_dropped_and_the_others_keep_receiving(
    overrides: dict[str, Any],
) -> None:
    async with serving({**overrides, "realtime_queue_size": QUEUE}) as served:
        app = served.pusher
        library = pusher.Pusher(
            app_id=app.app_id, key=app.key, secret=app.secret, host="127.0.0.1",
            port=served.port, ssl=False, timeout=10,
        )  # fmt: skip
        hub = services_of(served.app).hub
        # The slow one: it stops reading from the network once one message waits unread.
        slow = await websockets.connect(served.ws_url, max_queue=1, compression=None)
        hello = json.loads(await slow.recv())
        slow_id = json.loads(hello["data"])["socket_id"]
        await slow.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "firehose"}}))
        assert json.loads(await slow.recv())["event"] == "pusher_internal:subscription_succeeded"
        async with socket(served, compression=None, max_size=None) as healthy:
            await healthy.send("pusher:subscribe", {"channel": "firehose"})
            await healthy.until("pusher_internal:subscription_succeeded")
            received: list[int] = []
            expected = {"count": -1}
            reached = asyncio.Event()

            async def read(received: list[int] = received) -> None:
                while True:
                    message = await healthy.receive(timeout=30)
                    if message["event"] == "tick":
                        received.append(message["data"]["n"])
                    if len(received) == expected["count"]:
                        reached.set()

            reader = asyncio.create_task(read())
            sent = 0
            # Publish until the slow listener overflows (kernel buffers hold megabytes first).
            while not hub.connections[slow_id].listener.overflowed.is_set():
                assert sent < 20_000, "the slow consumer was never dropped"
                pad = secrets.token_hex(EVENT_BYTES // 2)
                batch = [
                    {"channel": "firehose", "name": "tick",
                     "data": json.dumps({"n": sent + i, "pad": pad})}
                    for i in range(BATCH)
                ]  # fmt: skip
                await asyncio.to_thread(library.trigger_batch, batch)
                sent += BATCH
            for i in range(BATCH):  # the others still get what comes after
                await asyncio.to_thread(library.trigger, "firehose", "tick", {"n": sent + i})
            sent += BATCH
            expected["count"] = sent
            if len(received) == sent:
                reached.set()
            await asyncio.wait_for(reached.wait(), 30)
            reader.cancel()
            assert received == list(range(sent))
        # The slow one, reading at last: what was buffered, then the close code.
        code = None
        try:
            while True:
                await asyncio.wait_for(slow.recv(), 30)
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        assert code == 4100
