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

**Callbacks** (``CALLCENTER_TWILIO_CALLBACK_FROM`` set, and the queue's
``callback`` rule offers one): the wait loop wraps its music in a
``<Gather numDigits="1">`` that says "press 1 to be called back". The key
posts to ``/telephony/twilio/callback``, which asks the caller to confirm the
calling number (1) or type another (then ``#``), hands the gateway a
``CallbackRequest``, says when we will call and hangs up; the call keeps its
place as a virtual call, and the original call's hang-up changes nothing.
When an agent accepts it, ``TwilioConnector.ring_back`` creates an outbound
call over REST (``Calls.json``) whose ``Url`` (``/callback/answer``, fetched
when the caller picks up) dials the agent, and whose ``StatusCallback``
(``/callback/status``) reports a ring nobody answered (the agent is freed,
the call retries later) or, after a conversation, its end. Those URLs carry
our call's original ``CallSid`` and the ring's claim (``bridge``) in the
query, which Twilio signs with the rest.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Callable, Iterable
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
    CallerNotReached,
    Conflict,
    InvalidSignature,
    NotFound,
    PeerCallGone,
    PeerFailed,
    PeerOutcomeUnknown,
    Unprocessable,
)
from callcenter.http.routing import HandlerFn, Routes
from callcenter.queue.models import Call, CallState
from callcenter.telephony_adapters.base import (
    TWILIO,
    AgentEndpoint,
    CallbackRequest,
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


def _twilio_webhook(
    path: str, summary: str, *, errors: Iterable[int] = (403,)
) -> Callable[[HandlerFn], HandlerFn]:
    """Every Twilio endpoint: a form Twilio posts and signs (the handler checks
    ``X-Twilio-Signature`` over the raw body), answered with TwiML."""
    return routes.route(
        "POST",
        path,
        summary=summary,
        raw_body=TwilioForm,
        body_media_type=FORM,
        response_media_type=TWIML,
        errors=errors,
        access="peer",
    )


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

#: The key that takes the callback offer, and then confirms the calling number.
CALLBACK_KEY = "1"
#: Times a caller is asked for a number a callback can ring before they just wait on.
CALLBACK_TRIES = 3
#: Seconds the offer's <Gather> listens after the music, before the wait loop repeats.
OFFER_TIMEOUT = 1
#: Seconds the confirmation listens for a key (a lone 1 is posted after this pause).
CONFIRM_TIMEOUT = 5
#: ``AnsweredBy`` (machine detection) values that mean no person picked up:
#: ``machine_start``, the ``machine_end_*`` of DetectMessageEnd, and ``fax``.
#: ``human`` and ``unknown`` are bridged (better an agent hears silence than a
#: person is hung up on).
MACHINE_ANSWERS = ("machine", "fax")
#: A callback leg's terminal CallStatus when nobody picked up, as the ring's result:
#: rang out or busy (no_answer), or it could not ring at all (failed).
RING_MISSED = {
    "no-answer": "no_answer",
    "busy": "no_answer",
    "failed": "failed",
    "canceled": "failed",
}


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

    def callback(self, step: str, **extra: str) -> str:
        """The callback offer's <Gather action>: ``step`` offer (the key) or confirm."""
        return f"{self.base}/telephony/twilio/callback?{urlencode({'step': step, **extra})}"

    def ring(self, kind: str, call_sid: str, bridge_id: int) -> str:
        """Endpoint ``kind`` (answer, status, dial) of a callback's ring: our call's
        original CallSid and the ring's claim, both signed by Twilio with the rest."""
        query = urlencode({"call": call_sid, "bridge": bridge_id})
        return f"{self.base}/telephony/twilio/callback/{kind}?{query}"


def _twiml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response), content_type=TWIML)


@_twilio_webhook(
    "/telephony/twilio/voice",
    "Twilio's 'A call comes in' webhook (and the <Gather> action): identify, "
    "maybe gather a customer number, enqueue",
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
    tried = _tries(request.query.get("try", "1"), GATHER_TRIES)
    urls = _Urls(public_base(request, settings.public_url))
    return _twiml(voice_twiml(view, urls, settings, gathered=bool(digits), tried=tried))


def _tries(value: str, last: int) -> int:
    """A ``try`` counter from our own URL. Only a small ASCII number counts ("²" passes
    isdigit() but not int(), and int() refuses thousands of digits: both were 500s);
    anything else is the last try."""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 4 else last


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
    if call.callback is not None and call.state is CallState.waiting:
        # A repeated webhook of a caller who took a callback: they need not hold.
        return callback_taken_twiml(call.callback.number, settings)
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


@_twilio_webhook(
    "/telephony/twilio/wait",
    "Twilio's <Enqueue waitUrl>: the caller's position and estimated wait, then music",
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
    urls = _Urls(public_base(request, settings.public_url))
    return _twiml(wait_twiml(view.call, settings, offer=_offer(view, urls)))


def _offer(view: CallView, urls: _Urls) -> str | None:
    """Where the callback offer's key goes, when the caller is offered one now."""
    return urls.callback("offer") if view.offer_callback else None


def wait_twiml(call: Call | None, settings: Settings, *, offer: str | None = None) -> VoiceResponse:
    """Position and estimate from our queue (not Twilio's), then hold music.

    ``offer``: the caller is offered a callback (while they hold); the music
    plays inside a one-key ``<Gather>`` posting there, so a key at any moment
    takes it and the loop goes on as before without one.
    """
    response = VoiceResponse()
    lang = settings.twilio_language
    if call is not None and call.state is CallState.waiting and call.callback is not None:
        return callback_taken_twiml(call.callback.number, settings)
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
    if offer is not None and call is not None and call.state is CallState.waiting:
        gather = response.gather(
            action=offer,
            method="POST",
            input="dtmf",
            num_digits=1,
            timeout=OFFER_TIMEOUT,
            language=lang,
        )
        gather.say("Press 1 to be called back; you keep your place.", language=lang)
        gather.play(settings.twilio_hold_music_url)
        return response
    response.play(settings.twilio_hold_music_url)
    return response


def spoken_number(number: str) -> str:
    """A phone number as <Say> reads it best: digit by digit (not "twelve billion")."""
    return " ".join(ch for ch in number if ch.isdigit())


def callback_taken_twiml(number: str, settings: Settings) -> VoiceResponse:
    """The caller took a callback to ``number``: say so and hang up (they keep their place)."""
    response = VoiceResponse()
    response.say(
        f"Thank you. We will call you back at {spoken_number(number)} when it is your turn. "
        "You keep your place in line. Goodbye.",
        language=settings.twilio_language,
    )
    response.hangup()
    return response


def confirm_twiml(
    call: Call,
    urls: _Urls,
    settings: Settings,
    *,
    tried: int,
    typed: bool,
    refused: str | None = None,
) -> VoiceResponse:
    """Ask which number to ring: confirm the calling number with 1, or type one and ``#``.

    ``typed``: only a typed number will do (the calling number is withheld or
    was refused). ``refused``: why the last answer was not taken, said first.
    After ``CALLBACK_TRIES`` the caller goes on waiting, place kept.
    """
    response = VoiceResponse()
    lang = settings.twilio_language
    if refused is not None:
        response.say(refused, language=lang)
    if tried <= CALLBACK_TRIES:
        calling = spoken_number(call.ani or "")
        typed = typed or not calling  # withheld, or no digits to read out (anonymous)
        extra = {"try": str(tried)} | ({"typed": "1"} if typed else {})
        gather = response.gather(
            action=urls.callback("confirm", **extra),
            method="POST",
            input="dtmf",
            finish_on_key="#",
            timeout=CONFIRM_TIMEOUT,
            language=lang,
        )
        if typed:
            gather.say(
                "Please enter the number we should call you back at, then press the pound key.",
                language=lang,
            )
        else:
            gather.say(
                f"We will call you back at {calling}. To confirm, press 1. "
                "For another number, enter it, then press the pound key.",
                language=lang,
            )
    # No answer (or none we could take): back to the wait loop, place kept.
    response.say("You keep your place in line.", language=lang)
    response.redirect(urls.wait, method="POST")
    return response


@_twilio_webhook(
    "/telephony/twilio/status",
    "Twilio's status callback and <Enqueue action>: a caller who hung up while "
    "waiting is abandoned, one who was connected completes",
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
            view = await gateway.view(TWILIO, sid)
            call = view.call
            if call is not None and view.holding:
                urls = _Urls(public_base(request, settings.public_url))
                response = wait_twiml(call, settings, offer=_offer(view, urls))
                response.redirect(urls.voice(call.queue), method="POST")
        # bridged, redirected, leave: we moved the caller ourselves; nothing to record.
    elif status in TERMINAL_STATUSES:
        await gateway.handle(TWILIO, Hangup(sid, cause=status))
    return _twiml(response)


@_twilio_webhook(
    "/telephony/twilio/dial",
    "The <Dial action> of a connect: an agent who did not answer sends the caller "
    "back to the queue with their key",
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


# -- callbacks -------------------------------------------------------------------


@_twilio_webhook(
    "/telephony/twilio/callback",
    "The callback offer's <Gather action> in the wait loop: 1 takes it, then the "
    "caller confirms the calling number (1) or types another (#), and hangs up keeping "
    "their place",
)
async def twilio_callback(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    params = await verified_form(request, settings)
    sid = _call_sid(params)
    gateway = request.app[app_keys.GATEWAY]
    urls = _Urls(public_base(request, settings.public_url))
    digits = params.get("Digits", "").strip()
    step = request.query.get("step", "offer")
    tried = _tries(request.query.get("try", "1"), CALLBACK_TRIES)
    typed = request.query.get("typed") == "1"
    connector = gateway.connectors.get(TWILIO)
    if connector is None or not connector.rings_back:
        # Offered while callbacks could be rung, answered after they were turned off:
        # nothing is stored, the caller waits on.
        return _twiml(_back_to_waiting(urls))
    if step == "confirm" and digits:
        number = None if digits == CALLBACK_KEY and not typed else digits
        try:
            view = await gateway.handle(TWILIO, CallbackRequest(sid, number))
        except Unprocessable as exc:
            if exc.field not in ("number", "ani"):
                raise
            view = await gateway.view(TWILIO, sid)
            if not view.holding or view.call is None:
                return _twiml(wait_twiml(view.call, settings))
            refused = (
                "Sorry, we cannot call your number back."
                if exc.field == "ani"
                else "Sorry, we cannot call that number."
            )
            again = confirm_twiml(
                view.call, urls, settings, tried=tried + 1, typed=True, refused=refused
            )
            return _twiml(again)
        except (Conflict, NotFound):
            # The call does not wait (any more): nothing to keep a place in.
            return _twiml(wait_twiml((await gateway.view(TWILIO, sid)).call, settings))
        # Taken now, or taken before (a repeat names the number stored first).
        taken = None if view.call is None else view.call.callback
        if taken is None:
            return _twiml(wait_twiml(view.call, settings))
        return _twiml(callback_taken_twiml(taken.number, settings))
    view = await gateway.view(TWILIO, sid)
    if not view.holding or view.call is None:
        return _twiml(wait_twiml(view.call, settings))
    if step == "offer":
        if digits != CALLBACK_KEY:
            return _twiml(_back_to_waiting(urls))  # another key: the offer is not taken
        return _twiml(confirm_twiml(view.call, urls, settings, tried=1, typed=False))
    # A confirmation with no digits (Twilio posts none; counted as a try all the same).
    return _twiml(confirm_twiml(view.call, urls, settings, tried=tried + 1, typed=typed))


def _back_to_waiting(urls: _Urls) -> VoiceResponse:
    response = VoiceResponse()
    response.redirect(urls.wait, method="POST")
    return response


def _ring_of(request: web.Request) -> tuple[str, int]:
    """Our call's original CallSid and the ring's claim, from a callback URL's query."""
    sid = request.query.get("call", "")
    if not sid or len(sid) > 64 or not sid.isprintable():
        raise Unprocessable("call is missing or not a call id", field="call")
    bridge = request.query.get("bridge", "")
    if not (bridge.isascii() and bridge.isdigit() and len(bridge) < 19):
        raise Unprocessable("bridge is missing or not a claim id", field="bridge")
    return sid, int(bridge)


@_twilio_webhook(
    "/telephony/twilio/callback/answer",
    "The Url of a callback's outbound call, fetched when the caller picks up: dial "
    "the agent who accepted, or let the caller go when the call ended meanwhile",
)
async def twilio_callback_answer(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    params = await verified_form(request, settings)
    _call_sid(params)  # the outbound leg's own id: our records name it already
    sid, bridge_id = _ring_of(request)
    urls = _Urls(public_base(request, settings.public_url))
    lang = settings.twilio_language
    response = VoiceResponse()
    answered_by = params.get("AnsweredBy", "")
    if answered_by.startswith(MACHINE_ANSWERS):
        # A voicemail or a fax: nobody to bridge an agent to. The ring counts as not
        # answered (the agent is freed; the call retries in its place or, after the
        # last attempt, ends callback_failed); Twilio's status callback that follows
        # is a report about a ring that is over, and changes nothing.
        plain = answered_by.isascii() and answered_by.isprintable()
        cause = f"answered by a machine ({answered_by[:40] if plain else 'machine'})"
        with contextlib.suppress(NotFound):
            await request.app[app_keys.GATEWAY].callback_missed(
                TWILIO, sid, bridge_id, "no_answer", cause
            )
        response.hangup()
        return _twiml(response)
    try:
        view = await request.app[app_keys.GATEWAY].callback_answered(TWILIO, sid, bridge_id)
    except NotFound:
        view = None
    agent = None if view is None or view.note is not None else view.agent
    if agent is not None and agent.endpoint:
        response.say("This is the call back you asked for. Connecting you now.", language=lang)
        try:
            add_dial(response, agent.endpoint, action=urls.ring("dial", sid, bridge_id))
            return _twiml(response)
        except PeerFailed:
            response = VoiceResponse()  # checked before the ring: the endpoint changed since
    # Ended while it rang (a supervisor), or no agent to dial: let the caller go.
    response.say("Sorry, we cannot take your call any more. Goodbye.", language=lang)
    response.hangup()
    return _twiml(response)


@_twilio_webhook(
    "/telephony/twilio/callback/dial",
    "The <Dial action> of a callback the caller picked up: an agent who did not "
    "answer puts the call back in its place (we ring the caller again)",
)
async def twilio_callback_dial(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    params = await verified_form(request, settings)
    _call_sid(params)
    sid, bridge_id = _ring_of(request)
    gateway = request.app[app_keys.GATEWAY]
    response = VoiceResponse()
    dial_status = params.get("DialCallStatus", "")
    call_status = params.get("CallStatus", "")
    if call_status in TERMINAL_STATUSES:
        # The caller hung up (while the agent rang, or after talking): the call ends,
        # if this ring is still the call's (a late report about an earlier one is not).
        await gateway.callback_leg_ended(
            TWILIO, sid, bridge_id, f"{call_status} while dialing the agent ({dial_status})"
        )
    elif dial_status in DIAL_MISSED:
        view = await gateway.connect_failed(
            TWILIO, sid, f"agent leg {dial_status}", bridge_id=bridge_id
        )
        if view.waiting:
            response.say(
                "Sorry, nobody could take your call just now. We will call you back; you keep "
                "your place in line. Goodbye.",
                language=settings.twilio_language,
            )
    response.hangup()
    return _twiml(response)


@_twilio_webhook(
    "/telephony/twilio/callback/status",
    "The status callback of a callback's outbound call: a ring nobody answered "
    "frees the agent (the call retries later); after a conversation, its end",
    errors=(403, 404),
)
async def twilio_callback_status(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    params = await verified_form(request, settings)
    _call_sid(params)
    sid, bridge_id = _ring_of(request)
    gateway = request.app[app_keys.GATEWAY]
    status = params.get("CallStatus", "")
    sip = params.get("SipResponseCode", "")
    cause = f"{status} (SIP {sip})" if sip.isascii() and sip.isdigit() else status
    if status in RING_MISSED:
        await gateway.callback_missed(TWILIO, sid, bridge_id, RING_MISSED[status], cause)
    elif status == "completed":
        # Completed after the answer URL took it: the conversation is over. Completed
        # without (our answer URL failed, Twilio hung up): a ring that reached nobody.
        view = await gateway.callback_missed(
            TWILIO, sid, bridge_id, "failed", "completed, never bridged (answer URL failed?)"
        )
        if view.note is not None:  # it had been answered: the conversation is over
            await gateway.callback_leg_ended(TWILIO, sid, bridge_id, "completed")
    return _twiml(VoiceResponse())


# -- outbound --------------------------------------------------------------------


def dial_twiml(endpoint: str, *, action: str | None = None) -> str:
    """``<Dial>`` to an agent's endpoint; Twilio dials clients, SIP URIs and numbers."""
    response = VoiceResponse()
    add_dial(response, endpoint, action=action)
    xml: str = response.to_xml(xml_declaration=False)
    return xml


def add_dial(response: VoiceResponse, endpoint: str, *, action: str | None = None) -> None:
    """Append ``<Dial>`` to ``endpoint``; ``PeerFailed`` (nothing appended) if Twilio cannot."""
    if not (
        endpoint.startswith(("client:", "sip:", "sips:"))
        or (endpoint.startswith("+") and endpoint[1:].isdigit())
    ):
        raise PeerFailed(
            f"Twilio cannot dial {endpoint!r}: use client:NAME, sip:URI or an E.164 number"
        )
    dial = response.dial(
        timeout=DIAL_TIMEOUT, **({"action": action, "method": "POST"} if action else {})
    )
    if endpoint.startswith("client:"):
        dial.client(endpoint.removeprefix("client:"))
    elif endpoint.startswith(("sip:", "sips:")):
        dial.sip(endpoint)
    else:
        dial.number(endpoint)


class TwilioConnector:
    """Connects callers with Twilio's REST API: update the caller's call with new TwiML,
    and ring callers back with a new call (``Calls.json``)."""

    peer = TWILIO

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        account_sid: str,
        auth_token: str,
        public_url: str | None,
        callback_from: str | None = None,
        machine_detection: bool = True,
    ) -> None:
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.account_sid = account_sid
        # HTTP Basic with the account SID and auth token, as Twilio's REST API wants.
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.headers = {"Authorization": f"Basic {credentials}"}
        self.urls = _Urls(public_url.rstrip("/")) if public_url else None
        self.dial_action = self.urls.dial if self.urls is not None else None
        #: The caller ID callbacks ring from (a number of the account).
        self.callback_from = callback_from
        #: A callback needs a number to ring from and our public URL for Twilio's
        #: requests about the ring; without them no Twilio caller is offered one.
        self.rings_back = callback_from is not None and self.urls is not None
        #: Ask Twilio who picked up a callback (``AnsweredBy`` on the answer URL).
        self.machine_detection = machine_detection

    @property
    def calls_url(self) -> str:
        return f"{self.api_base}/2010-04-01/Accounts/{quote(self.account_sid, safe='')}/Calls.json"

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
        """Create an outbound call to ``number``; returns once Twilio placed it.

        Twilio fetches ``Url`` when the caller picks up (``/callback/answer``
        dials the agent) and posts the leg's end to ``StatusCallback``
        (``/callback/status``): those report the outcome to the gateway. A
        refusal (an invalid or forbidden ``To``, HTTP 4xx) is a ring that
        could not ring (``CallerNotReached``, result ``failed``).
        """
        if self.urls is None or self.callback_from is None or call.bridge_id is None:
            raise PeerFailed(
                f"{self.peer} rings callers back only with CALLCENTER_TWILIO_CALLBACK_FROM "
                "and CALLCENTER_PUBLIC_URL set"
            )
        # An agent Twilio cannot dial is refused before the caller's phone rings.
        add_dial(VoiceResponse(), agent.endpoint)
        form = {
            "To": number,
            "From": self.callback_from,
            "Url": self.urls.ring("answer", call.peer_call_id, call.bridge_id),
            "Method": "POST",
            "Timeout": str(max(1, math.ceil(ring_seconds))),
            "StatusCallback": self.urls.ring("status", call.peer_call_id, call.bridge_id),
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": "completed",
        }
        if self.machine_detection:
            # Synchronous: Twilio fetches Url once it knows, with AnsweredBy.
            form["MachineDetection"] = "Enable"
        status, text = await self._post(self.calls_url, form, "Twilio's call create")
        if status >= 300:
            error = f"Twilio refused the callback to {number} with {status}: {text[:300]}"
            if 400 <= status < 500:  # it will not ring that number (or not with our request)
                raise CallerNotReached(error, result="failed")
            raise PeerFailed(error)
        try:
            body = json.loads(text)
            leg = body["sid"]
        except (ValueError, KeyError, TypeError):
            leg = None
        if not isinstance(leg, str) or not leg:
            raise PeerOutcomeUnknown(f"Twilio answered the call create with no sid: {text[:200]}")
        return Ring(leg=leg, answered=False)

    async def hangup(self, call: PeerCall) -> None:
        """End the caller's leg: a callback's outbound leg once they picked up (``leg``)."""
        await self._update(call.leg or call.peer_call_id, {"Status": "completed"})

    async def _update(self, call_sid: str, form: dict[str, str]) -> None:
        status, text = await self._post(self.call_url(call_sid), form, "Twilio's call update")
        if status >= 300:
            error = f"Twilio answered the call update with {status}: {text[:300]}"
            if status == 400 and _error_code(text) == CALL_NOT_IN_PROGRESS:
                raise PeerCallGone(error)
            raise PeerFailed(error)

    async def _post(self, url: str, form: dict[str, str], what: str) -> tuple[int, str]:
        """POST ``form`` to the REST API: the status and the answer's text."""
        try:
            async with self.session.post(url, data=form, headers=self.headers) as resp:
                return resp.status, await resp.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise send_failure(exc, what) from exc


def _error_code(text: str) -> int | None:
    """The ``code`` of a Twilio REST error body, if it is one."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None
