"""Fake telephony peers on 127.0.0.1 that speak the peers' real wire formats.

``FakeTwilioAPI`` is Twilio's REST API as far as we use it (updating a live
call, creating an outbound one), checking HTTP Basic auth with the account
SID and token and recording every update and create. ``FakePBX`` receives
the generic adapter's signed commands and checks their signature.
``twilio_signature`` is an independent implementation of Twilio's signing
algorithm (not the library the service uses), checked against the
documented test vectors in the unit tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.test_utils import TestClient

from callcenter.telephony_adapters import signing

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-12345"
PUBLIC_URL = "https://cc.example.com"
GENERIC_SECRET = "whsec_test_secret"


def twilio_signature(token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + sorted name+value pairs))."""
    data = url + "".join(f"{k}{v}" for k, v in sorted(set(params)))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def call_sid(n: int) -> str:
    return f"CA{n:032x}"


def voice_params(sid: str, caller: str, **more: str) -> list[tuple[str, str]]:
    """An incoming-call form as Twilio posts it (field names from Twilio's docs)."""
    return [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", "ringing"),
        ("Called", "+14155550100"),
        ("Caller", caller),
        ("Direction", "inbound"),
        ("From", caller),
        ("FromCountry", "US"),
        ("To", "+14155550100"),
        ("ToCountry", "US"),
        *more.items(),
    ]


async def post_twilio(
    client: TestClient[Any, Any],
    path: str,
    params: Sequence[tuple[str, str]],
    *,
    token: str = AUTH_TOKEN,
    public_url: str = PUBLIC_URL,
    signature: str | None = None,
) -> tuple[int, str]:
    """POST a form to ``path`` signed as Twilio signs it for ``public_url + path``."""
    sig = signature if signature is not None else twilio_signature(token, public_url + path, params)
    resp = await client.post(
        path,
        data=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sig,
        },
    )
    return resp.status, await resp.text()


async def post_generic(
    client: TestClient[Any, Any],
    body: bytes,
    *,
    secrets: Sequence[str] = (GENERIC_SECRET,),
    timestamp: int | None = None,
    header: str | None = None,
) -> tuple[int, dict[str, Any]]:
    t = int(time.time()) if timestamp is None else timestamp
    value = (
        header
        if header is not None
        else signing.header_value([s.encode() for s in secrets], t, body)
    )
    resp = await client.post(
        "/telephony/generic/events",
        data=body,
        headers={"Content-Type": "application/json", signing.HEADER: value},
    )
    data: dict[str, Any] = await resp.json()
    return resp.status, data


@dataclass
class FakeTwilioAPI:
    """Twilio's call-update and call-create endpoints; ``fail`` makes the next updates
    answer 500.

    Calls in ``ended`` are over at Twilio: updating one answers what Twilio
    answers then, HTTP 400 with error code 21220 ("Call is not in-progress").
    An update to ``Status=completed`` (or ``canceled``) ends the call there.
    ``delay``: seconds the answer to an update takes *after* the update was
    carried out (a slow API: the client times out, yet the call was moved).

    A create (``Calls.json``) is recorded in ``created`` with the new call's
    ``Sid`` and answered 201 as Twilio does; ``refuse_create``: the next creates
    are refused as Twilio refuses an invalid ``To`` (400, code 21211).
    """

    account_sid: str = ACCOUNT_SID
    token: str = AUTH_TOKEN
    fail: int = 0
    updates: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    refused: int = 0
    ended: set[str] = field(default_factory=set)
    tried_ended: int = 0
    delay: float = 0.0
    created: list[dict[str, str]] = field(default_factory=list)
    refuse_create: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls.json", self._create)
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{sid}.json", self._update)
        return app

    def _refused(self, request: web.Request) -> web.Response | None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        expected = base64.b64encode(f"{self.account_sid}:{self.token}".encode()).decode()
        if scheme != "Basic" or encoded != expected:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.match_info["account"] != self.account_sid:
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not form.get("To") or not form.get("From") or not (form.get("Url") or form.get("Twiml")):
            return web.json_response(
                {"code": 21201, "message": "To, From and Url (or Twiml) are required"}, status=400
            )
        if self.refuse_create > 0:
            self.refuse_create -= 1
            return web.json_response(
                {
                    "code": 21211,
                    "message": f"The 'To' number {form['To']} is not a valid phone number.",
                    "more_info": "https://www.twilio.com/docs/errors/21211",
                    "status": 400,
                },
                status=400,
            )
        sid = f"CA{0xCA11BAC000 + len(self.created) + 1:032x}"
        self.created.append({"Sid": sid, **form})
        return web.json_response(
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": form["To"],
                "from": form["From"],
                "status": "queued",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
            },
            status=201,
        )

    async def _update(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        form = await request.post()
        if self.fail > 0:
            self.fail -= 1
            self.refused += 1
            return web.json_response({"code": 20500, "message": "Internal"}, status=500)
        sid = request.match_info["sid"]
        if sid in self.ended:
            self.tried_ended += 1
            return web.json_response(
                {
                    "code": 21220,
                    "message": "Unable to update record: Call is not in-progress. Cannot redirect.",
                    "more_info": "https://www.twilio.com/docs/errors/21220",
                    "status": 400,
                },
                status=400,
            )
        self.updates.append((sid, {k: str(v) for k, v in form.items()}))
        if form.get("Status") in ("completed", "canceled"):
            self.ended.add(sid)
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response(
            {"sid": sid, "account_sid": self.account_sid, "status": "in-progress"}
        )


@dataclass
class FakePBX:
    """Receives the generic adapter's commands; refuses any with a bad signature.

    ``fail``: the next commands are answered 503 (and not recorded).
    A ``callback`` command rings the caller: its answer is the next of
    ``rings`` (``answered`` when none is left), given once ``ring_gate`` is
    set (the ring lasts until a test says it is over); ``ringing`` is set
    while it waits there.
    """

    secret: str = GENERIC_SECRET
    commands: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    fail: int = 0
    refused: int = 0
    rings: list[str] = field(default_factory=list)
    ring_gate: asyncio.Event | None = None
    ringing: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/pbx/commands", self._command)
        return app

    async def _command(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            signing.verify(
                request.headers.get(signing.HEADER),
                body,
                self.secret.encode(),
                now=time.time(),
                tolerance=300,
            )
        except Exception:
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=403)
        if self.fail > 0:
            self.fail -= 1
            self.refused += 1
            return web.json_response({"error": "busy"}, status=503)
        command = await request.json()
        self.commands.append(command)
        if command.get("action") == "callback":
            self.ringing.set()
            if self.ring_gate is not None:
                await self.ring_gate.wait()
            result = self.rings.pop(0) if self.rings else "answered"
            return web.json_response({"result": result})
        return web.json_response({"ok": True})
