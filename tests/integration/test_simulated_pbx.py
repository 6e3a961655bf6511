"""The simulated PBX (``simulation/pbx.py``) keeps every step of a fast call.

Since the enqueue offers its own call, a service on a busy machine may offer,
connect and end a call before the PBX has read the webhook's answer that
gives the call's id. The whole-path benchmark counted such a call lost: the
PBX got its hang-up but could not file it under an id yet. This drives that
order against a stand-in service on 127.0.0.1 that answers the webhook only
after the PBX took the hang-up.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from callcenter.simulation.pbx import EVENTS_PATH, HEADER, Pbx, sign
from callcenter.simulation.population import Caller
from tests.integration.queue_helpers import eventually

SECRET = b"simulated-pbx-secret"


async def test_a_hang_up_before_the_webhooks_answer_is_filed_under_the_call(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    asked = asyncio.Event()
    answer = asyncio.Event()

    async def events(request: web.Request) -> web.Response:
        event = await request.json()
        if event["type"] == "call.incoming":
            asked.set()
            await answer.wait()  # the hang-up overtakes this answer
            return web.json_response({"action": "wait", "call": {"id": 7, "state": "waiting"}})
        return web.json_response({"call": {"id": 7, "state": "completed"}})

    app = web.Application()
    app.router.add_post(EVENTS_PATH, events)
    service = await aiohttp_server(app, host="127.0.0.1")
    pbx = Pbx(
        str(service.make_url("")).rstrip("/"),
        SECRET.decode(),
        random.Random(1),
        mean_patience=math.inf,
        mean_talk=math.inf,
        callback_take=0.0,
        redial=0.0,
    )
    callback = await pbx.start()
    try:
        pbx.place("c1", Caller(kind="known", ani="+12125550100", typed=None, customer=None), "q")
        await asyncio.wait_for(asked.wait(), 10)
        body = json.dumps({"action": "hangup", "call_id": "c1"}).encode()
        async with (
            ClientSession() as session,
            session.post(
                callback,
                data=body,
                headers={HEADER: sign(SECRET, body, time.time())},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
        assert pbx.steps.at.get(7) is None  # no id yet: nothing filed
        answer.set()

        async def filed() -> bool:
            return "queued" in pbx.steps.at.get(7, {})

        await eventually(filed)
        steps = pbx.steps.at[7]
        assert "release" in steps and steps["release"] <= steps["queued"]
    finally:
        await pbx.close()
