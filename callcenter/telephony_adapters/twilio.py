"""The Twilio Programmable Voice adapter: signed form posts in, TwiML and REST out.

Twilio posts ``application/x-www-form-urlencoded`` forms and signs each with
``X-Twilio-Signature`` (HMAC-SHA1 over the requested URL and the sorted
parameters, keyed with the auth token). We check it with the official
``twilio`` package's ``RequestValidator`` against the URL Twilio requested:
``CALLCENTER_PUBLIC_URL`` plus the path and raw query when the service runs
behind a proxy, the request's own URL otherwise. TwiML is built with the
package's ``VoiceResponse``, so values are always escaped.

* ``/telephony/twilio/voice`` ("A call comes in"): identify the caller from
  ``From``, optionally ``<Gather>`` a customer number from an unknown caller
  (the Gather posts its ``Digits`` back here), then ``<Enqueue>`` into a
  Twilio queue named like ours, whose ``waitUrl`` is ``/wait``. ``?queue=``
  on the URL picks our queue.
* ``/telephony/twilio/wait``: what the caller hears while waiting, their
  position and estimated wait from *our* queue, then hold music; Twilio
  requests it again when it runs out.
* ``/telephony/twilio/status``: the call's status callback (a terminal
  ``CallStatus`` hangs the call up: abandoned while waiting, completed once
  connected) and the ``<Enqueue action>`` (``QueueResult=hangup`` abandons).
* ``/telephony/twilio/dial``: the ``<Dial action>`` of a connect; an agent
  who did not answer puts the caller back in the queue with their key.

When an agent accepts, ``TwilioConnector.connect`` updates the caller's call
over the REST API with ``<Dial>`` to the agent's endpoint; Twilio takes the
caller out of its queue and rings the agent.
"""

from __future__ import annotations

import base64
import json
import math
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp
from aiohttp import web
from multidict import MultiDict
from pydantic import BaseModel, ConfigDict, Field
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from callcenter import app_keys
from callcenter.config import Settings
from callcenter.errors import (
    BadRequest,
    InvalidSignature,
    PeerCallGone,
    PeerFailed,
    Unprocessable,
)
from callcenter.http.routing import Routes
from callcenter.queue.models import Call, CallState
from callcenter.telephony_adapters.base import (
    TWILIO,
    AgentEndpoint,
    Digits,
    Hangup,
    Incoming,
    PeerCall,
    Ring,
    send_failure,
)
from callcenter.telephony_adapters.gateway import CallView
from callcenter.telephony_adapters.webhooks import public_base, read_body, requested_url

routes = Routes("telephony")

SIGNATURE_HEADER = "X-Twilio-Signature"
TWIML = "text/xml"
FORM = "application/x-www-form-urlencoded"

#: Call statuses after which the caller's leg is gone (Twilio's CallStatus values).
TERMINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
#: QueueResult values that mean the caller left the queue by hanging up.
QUEUE_HANGUP = frozenset({"hangup"})
#: QueueResult values after which the caller is still there but not in Twilio's queue.
QUEUE_TROUBLE = frozenset({"error", "system-error", "queue-full"})
#: DialCallStatus values of an agent leg that never talked to the caller.
DIAL_MISSED = frozenset({"busy", "no-answer", "failed", "canceled"})

#: Customer numbers typed on the keypad; ``#`` ends one early.
GATHER_MAX_DIGITS = 12
GATHER_TRIES = 2
#: Seconds an agent's phone rings before the caller goes back to the queue.
DIAL_TIMEOUT = 20
#: Twilio's REST error for an update of a call that has ended ("Call is not in-progress").
CALL_NOT_IN_PROGRESS = 21220
#: Twilio carries out a call update while it answers it, within seconds; a caller it
#: still holds in its queue this long after our connect was sent was never moved.
STRANDED_AFTER_SECONDS = 60.0


class TwilioForm(BaseModel):
    """The parameters we read from Twilio's form posts (Twilio sends more; all are signed)."""

    model_config = ConfigDict(extra="allow")

    CallSid: str = Field(description="CA + 32 hex: the call; our idempotency key.")
    AccountSid: str | None = None
    From: str | None = Field(default=None, description="The caller (E.164, or client:name).")
    To: str | None = None
    CallStatus: str | None = Field(default=None, description="queued … completed, canceled.")
    Digits: str | None = Field(default=None, description="From <Gather>: the typed digits.")
    QueueResult: str | None = Field(default=None, description="From <Enqueue action>.")
    DialCallStatus: str | None = Field(default=None, description="From <Dial action>.")


# -- inbound ---------------------------------------------------------------------


async def verified_form(request: web.Request, settings: Settings) -> MultiDict[str]:
    """The posted form, once its ``X-Twilio-Signature`` matches; 403 otherwise.

    Twilio signs the parsed parameters, so the form is parsed first (bounded
    and strictly), but nothing is looked up or stored before the check.
    """
    token = settings.twilio_auth_token
    if token is None:
        raise InvalidSignature(
            "the Twilio adapter has no auth token: set CALLCENTER_TWILIO_AUTH_TOKEN"
        )
    body = await read_body(request, settings.webhook_max_bytes, seconds=settings.body_read_seconds)
    if body and request.content_type != FORM:
        raise BadRequest(f"Twilio posts {FORM}, not {request.content_type}")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not a valid form: {exc}") from None
    params: MultiDict[str] = MultiDict(pairs)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise InvalidSignature(f"the {SIGNATURE_HEADER} header is missing")
    url = requested_url(request, settings.public_url)
    try:
        valid = RequestValidator(token.get_secret_value()).validate(url, params, signature)
    except ValueError:  # the validator parses the port: "host:abc", "[::1" are no URL
        raise BadRequest(
            f"cannot rebuild the URL Twilio signed from {url[:200]!r}: the Host header "
            "(or CALLCENTER_PUBLIC_URL) is not a valid host and port"
        ) from None
    if not valid:
        raise InvalidSignature(
            f"{SIGNATURE_HEADER} does not match this request to {url} "
            "(behind a proxy, CALLCENTER_PUBLIC_URL must be the URL Twilio calls)"
        )
    return params


def _call_sid(params: MultiDict[str]) -> str:
    sid = params.get("CallSid", "").strip()
    if not sid or len(sid) > 64 or not sid.isprintable():
        raise Unprocessable("CallSid is missing or not a call id", field="CallSid")
    return sid


def _caller(value: str | None) -> str | None:
    """``From`` as the calling number; a caller ID too long to be a number (a long
    SIP URI) or with control characters is treated as withheld rather than
    refusing the call."""
    if value is None or len(value) > 64 or not value.isprintable():
        return None
    return value


class _Urls:
    """Absolute URLs of our endpoints as Twilio reaches them."""

    def __init__(self, base: str) -> None:
        self.base = base

    def voice(self, queue: str, **extra: str) -> str:
        return f"{self.base}/telephony/twilio/voice?{urlencode({'queue': queue, **extra})}"

    @property
    def wait(self) -> str:
        return f"{self.base}/telephony/twilio/wait"

    @property
    def status(self) -> str:
        return f"{self.base}/telephony/twilio/status"

    @property
    def dial(self) -> str:
        return f"{self.base}/telephony/twilio/dial"


def _twiml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response), content_type=TWIML)


@routes.route(
    "POST",
    "/telephony/twilio/voice",
    summary="Twilio's 'A call comes in' webhook (and the <Gather> action): identify, "
    "maybe gather a customer number, enqueue",
    raw_body=TwilioForm,
    body_media_type=FORM,
    response_media_type=TWIML,
    errors=[403],
    access="peer",
)
async def twilio_voice(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    params = await verified_form(request, settings)
    sid = _call_sid(params)
    gateway = request.app[app_keys.GATEWAY]
    view = await gateway.handle(
        TWILIO,
        Incoming(
            sid,
            ani=_caller(params.get("From")),
            dialed=params.get("To"),
            queue=request.query.get("queue") or None,
        ),
    )
    digits = params.get("Digits", "").strip()
    if digits:
        view = await gateway.handle(TWILIO, Digits(sid, digits))
    tries = request.query.get("try", "1")
    # Only a small ASCII number counts ("²" passes isdigit() but not int(), and int()
    # refuses thousands of digits: both were 500s); anything else is the last try.
    tried = int(tries) if tries.isascii() and tries.isdigit() and len(tries) < 4 else GATHER_TRIES
    urls = _Urls(public_base(request, settings.public_url))
    return _twiml(voice_twiml(view, urls, settings, gathered=bool(digits), tried=tried))


def voice_twiml(
    view: CallView, urls: _Urls, settings: Settings, *, gathered: bool, tried: int
) -> VoiceResponse:
    """What a caller hears on arrival (pure: the view and the settings decide)."""
    response = VoiceResponse()
    call = view.call
    if call is None or call.state in (CallState.abandoned, CallState.completed):
        response.hangup()
        return response
    if call.state is CallState.transferred:
        response.say(
            "Sorry, nobody can take your call now. Goodbye.", language=settings.twilio_language
        )
        response.hangup()
        return response
    lang = settings.twilio_language
    if view.digits == "not_found":
        response.say("Sorry, we could not find that customer number.", language=lang)
    ask = (
        settings.twilio_gather_unknown
        and call.state is CallState.waiting
        and not view.known_caller
        and (
            (view.created and not gathered) or (view.digits == "not_found" and tried < GATHER_TRIES)
        )
    )
    if ask:
        gather = response.gather(
            action=urls.voice(call.queue, **{"try": str(tried + 1 if gathered else 1)}),
            method="POST",
            input="dtmf",
            num_digits=GATHER_MAX_DIGITS,
            finish_on_key="#",
            timeout=6,
            language=lang,
        )
        gather.say(
            "If you are a customer, please enter your customer number, then press the pound key.",
            language=lang,
        )
    response.enqueue(
        call.queue,
        action=urls.status,
        method="POST",
        wait_url=urls.wait,
        wait_url_method="POST",
    )
    return response


@routes.route(
    "POST",
    "/telephony/twilio/wait",
    summary="Twilio's <Enqueue waitUrl>: the caller's position and estimated wait, then music",
    raw_body=TwilioForm,
    body_media_type=FORM,
    response_media_type=TWIML,
    errors=[403],
    access="peer",
)
async def twilio_wait(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    params = await verified_form(request, settings)
    # A wait request proves the caller is still in Twilio's queue; the gateway
    # answers with the position and EWT, and takes back a call whose connect
    # was sent long ago and never took effect.
    view = await request.app[app_keys.GATEWAY].still_at_peer(
        TWILIO, _call_sid(params), stranded_after=STRANDED_AFTER_SECONDS
    )
    return _twiml(wait_twiml(view.call, settings))


def wait_twiml(call: Call | None, settings: Settings) -> VoiceResponse:
    """Position and estimate from our queue (not Twilio's), then hold music."""
    response = VoiceResponse()
    lang = settings.twilio_language
    if call is not None and call.state is CallState.waiting and call.position is not None:
        words = f"You are number {call.position} in line."
        ewt = call.estimated_wait_seconds
        if ewt is not None:
            if ewt < 60:
                words += " You will be answered in less than a minute."
            else:
                minutes = math.ceil(ewt / 60)
                words += f" Your estimated wait is about {minutes} minute{'s' * (minutes > 1)}."
        response.say(words, language=lang)
    elif call is not None and call.state not in (CallState.waiting, CallState.connected):
        response.say("Sorry, nobody can take your call now. Goodbye.", language=lang)
        response.hangup()
        return response
    response.play(settings.twilio_hold_music_url)
    return response


@routes.route(
    "POST",
    "/telephony/twilio/status",
    summary="Twilio's status callback and <Enqueue action>: a caller who hung up while "
    "waiting is abandoned, one who was connected completes",
    raw_body=TwilioForm,
    body_media_type=FORM,
    response_media_type=TWIML,
    errors=[403],
    access="peer",
)
async def twilio_status(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    params = await verified_form(request, settings)
    sid = _call_sid(params)
    gateway = request.app[app_keys.GATEWAY]
    response = VoiceResponse()
    queue_result = params.get("QueueResult")
    status = params.get("CallStatus")
    if queue_result is not None:
        if queue_result in QUEUE_HANGUP:
            await gateway.handle(TWILIO, Hangup(sid, cause=f"queue {queue_result}"))
        elif queue_result in QUEUE_TROUBLE:
            # Still on the line but out of Twilio's queue (full, or an error), yet
            # still in ours, and a REST update reaches any live call: hold them
            # with their position and the music, then try Twilio's queue again.
            # (A bare redirect looped once a second in silence while it was full.)
            call = (await gateway.view(TWILIO, sid)).call
            if call is not None and call.state is CallState.waiting:
                urls = _Urls(public_base(request, settings.public_url))
                response = wait_twiml(call, settings)
                response.redirect(urls.voice(call.queue), method="POST")
        # bridged, redirected, leave: we moved the caller ourselves; nothing to record.
    elif status in TERMINAL_STATUSES:
        await gateway.handle(TWILIO, Hangup(sid, cause=status))
    return _twiml(response)


@routes.route(
    "POST",
    "/telephony/twilio/dial",
    summary="The <Dial action> of a connect: an agent who did not answer sends the caller "
    "back to the queue with their key",
    raw_body=TwilioForm,
    body_media_type=FORM,
    response_media_type=TWIML,
    errors=[403],
    access="peer",
)
async def twilio_dial(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    params = await verified_form(request, settings)
    sid = _call_sid(params)
    response = VoiceResponse()
    dial_status = params.get("DialCallStatus", "")
    call_status = params.get("CallStatus", "")
    if call_status in TERMINAL_STATUSES:
        # The caller's own leg is over (they hung up while the agent's phone rang):
        # the call ends here; putting it back in the queue would offer a caller
        # who is gone to the next agent and blame this one for not answering.
        await request.app[app_keys.GATEWAY].handle(
            TWILIO, Hangup(sid, cause=f"{call_status} while dialing the agent ({dial_status})")
        )
    elif dial_status in DIAL_MISSED:
        bridge = request.query.get("bridge", "")
        view = await request.app[app_keys.GATEWAY].connect_failed(
            TWILIO,
            sid,
            f"agent leg {dial_status}",
            bridge_id=int(bridge) if bridge.isascii() and bridge.isdigit() else None,
        )
        if view.call is not None and view.call.state is CallState.waiting:
            urls = _Urls(public_base(request, settings.public_url))
            response.redirect(urls.voice(view.call.queue), method="POST")
            return _twiml(response)
        if view.call is not None and view.call.state is CallState.connected:
            # A report about an earlier connect (repeated, or late): the caller is
            # being connected by a newer one, which this answer must not disturb.
            return _twiml(response)
    response.hangup()
    return _twiml(response)


# -- outbound --------------------------------------------------------------------


def dial_twiml(endpoint: str, *, action: str | None = None) -> str:
    """``<Dial>`` to an agent's endpoint; Twilio dials clients, SIP URIs and numbers."""
    response = VoiceResponse()
    dial = response.dial(
        timeout=DIAL_TIMEOUT, **({"action": action, "method": "POST"} if action else {})
    )
    if endpoint.startswith("client:"):
        dial.client(endpoint.removeprefix("client:"))
    elif endpoint.startswith(("sip:", "sips:")):
        dial.sip(endpoint)
    elif endpoint.startswith("+") and endpoint[1:].isdigit():
        dial.number(endpoint)
    else:
        raise PeerFailed(
            f"Twilio cannot dial {endpoint!r}: use client:NAME, sip:URI or an E.164 number"
        )
    xml: str = response.to_xml(xml_declaration=False)
    return xml


class TwilioConnector:
    """Connects callers with Twilio's REST API: update the caller's call with new TwiML."""

    peer = TWILIO
    #: Not yet: its callers are never offered a callback, so nothing asks it to ring one.
    rings_back = False

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        account_sid: str,
        auth_token: str,
        public_url: str | None,
    ) -> None:
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.account_sid = account_sid
        # HTTP Basic with the account SID and auth token, as Twilio's REST API wants.
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.headers = {"Authorization": f"Basic {credentials}"}
        self.dial_action = _Urls(public_url.rstrip("/")).dial if public_url else None

    def call_url(self, call_sid: str) -> str:
        return (
            f"{self.api_base}/2010-04-01/Accounts/{quote(self.account_sid, safe='')}"
            f"/Calls/{quote(call_sid, safe='')}.json"
        )

    async def connect(self, call: PeerCall, agent: AgentEndpoint) -> None:
        action = self.dial_action
        if action is not None and call.bridge_id is not None:
            action += f"?{urlencode({'bridge': call.bridge_id})}"
        twiml = dial_twiml(agent.endpoint, action=action)
        await self._update(call.peer_call_id, {"Twiml": twiml})

    async def ring_back(
        self, call: PeerCall, agent: AgentEndpoint, number: str, ring_seconds: float
    ) -> Ring:
        """This peer does not ring callers back (``rings_back`` is false)."""
        raise PeerFailed(f"{self.peer} does not ring callers back")

    async def hangup(self, call: PeerCall) -> None:
        await self._update(call.peer_call_id, {"Status": "completed"})

    async def _update(self, call_sid: str, form: dict[str, str]) -> None:
        url = self.call_url(call_sid)
        try:
            async with self.session.post(url, data=form, headers=self.headers) as resp:
                status = resp.status
                text = (await resp.text(errors="replace"))[:300] if status >= 300 else ""
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise send_failure(exc, "Twilio's call update") from exc
        if status >= 300:
            error = f"Twilio answered the call update with {status}: {text}"
            if status == 400 and _error_code(text) == CALL_NOT_IN_PROGRESS:
                raise PeerCallGone(error)
            raise PeerFailed(error)


def _error_code(text: str) -> int | None:
    """The ``code`` of a Twilio REST error body, if it is one."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None
