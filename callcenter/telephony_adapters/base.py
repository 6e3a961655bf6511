"""The common interface of every telephony peer: events in, commands out.

An adapter (generic JSON, Twilio, Asterisk ARI) does two things and nothing
more. Inbound, it verifies and parses what its peer sends into the four
``CallEvent`` kinds below and hands them to the ``TelephonyGateway``, which
owns the call's life in the queue. Outbound, it implements ``Connector`` so
the ``Bridger`` can tell the peer to connect a caller to the agent who took
the call (or to hang up).

A call is known in our ``calls`` table by ``external_id(peer, peer_call_id)``,
``"<peer>:<peer call id>"``: the unique column makes every adapter idempotent
by the peer's own call id (and the API shows it as the call's ``call_id``).
The gateway also stores the peer and its call id in their own columns
(``calls.peer``, ``calls.peer_call_id``, migration 0010), which is what the
bridger, the releaser and the ARI adapter read to know whom to command:
nothing parses ``external_id`` back. Calls handed in by ``POST /api/calls``
have no peer and are never connected by us.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp

from callcenter.errors import PeerFailed, PeerOutcomeUnknown
from callcenter.queue.models import Call

#: The peers we speak to; the names are the ``external_id`` prefixes.
GENERIC = "generic"
TWILIO = "twilio"
ARI = "ari"
PEERS = frozenset({GENERIC, TWILIO, ARI})

#: Longest peer call id we store (``calls.external_id`` allows 200 with the prefix).
MAX_PEER_CALL_ID = 180


@dataclass(frozen=True)
class Incoming:
    """A call arrived at the peer and waits for us to take it.

    ``ani``: the calling number as the peer gave it (any format, or withheld).
    ``customer_number``: already collected by the peer's IVR, if it has one.
    ``queue``: where the peer wants it (None: the adapter's default queue).
    ``dialed``: the number the caller dialled, kept for the peer's own routing.
    """

    peer_call_id: str
    ani: str | None = None
    customer_number: str | None = None
    queue: str | None = None
    dialed: str | None = None


@dataclass(frozen=True)
class Digits:
    """The caller typed digits (a customer number) while waiting."""

    peer_call_id: str
    digits: str


@dataclass(frozen=True)
class Hangup:
    """The caller's leg is gone. ``cause``: the peer's reason, as text, if it gave one."""

    peer_call_id: str
    cause: str | None = None


@dataclass(frozen=True)
class CallbackRequest:
    """The waiting caller takes the offered callback and will hang up.

    ``number``: what they confirmed or typed to be rung at; None: the calling
    number. The gateway checks it can be dialled (``dialable``).
    """

    peer_call_id: str
    number: str | None = None


CallEvent = Incoming | Digits | Hangup | CallbackRequest


def external_id(peer: str, peer_call_id: str) -> str:
    """Our ``calls.external_id`` for a peer's call id."""
    return f"{peer}:{peer_call_id}"


def split_external_id(value: str) -> tuple[str, str] | None:
    """``(peer, peer_call_id)`` when ``value`` names a call of a known peer, else None.

    The rule migration 0010 applied once to fill ``calls.peer`` for the calls
    stored before it; the running service reads the columns instead.
    """
    peer, sep, rest = value.partition(":")
    if not sep or peer not in PEERS or not rest:
        return None
    return peer, rest


@dataclass(frozen=True)
class PeerCall:
    """A call as a connector needs it: whom to address at the peer, and our record.

    ``bridge_id`` names this connect (the bridger's claim). A peer that reports
    back on the connect later (Twilio's ``<Dial action>``) carries it, so a late
    or repeated report about an earlier connect is told apart from the current one.
    """

    peer: str
    peer_call_id: str
    record: Call
    bridge_id: int | None = None
    #: The leg to command when it is not the caller's first: a callback's
    #: outbound leg, as the peer named it (``ring_back``'s answer).
    leg: str | None = None

    @property
    def id(self) -> int:
        """Our call id."""
        return self.record.id


@dataclass(frozen=True)
class AgentEndpoint:
    """Where the peer reaches an agent.

    ``endpoint`` is what the agent's record holds: ``client:ada``,
    ``sip:ada@pbx.example``, ``+15551230000`` or ``PJSIP/1001``; each
    connector says which forms it can dial and fails on the others.
    """

    agent_id: int
    name: str
    endpoint: str


@dataclass(frozen=True)
class Ring:
    """What ``ring_back`` did. ``leg``: the peer's id of the outbound leg, when it has
    its own (None: the call's own id names it). ``answered``: the caller picked up
    and is bridged; false: the ring is placed and the peer reports its outcome later."""

    leg: str | None
    answered: bool


#: Failures before a command left us: the peer cannot have acted on it.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def send_failure(exc: Exception, command: str) -> PeerFailed:
    """What a failed HTTP command means for the call.

    Refused or never connected: surely not carried out, so it may be retried.
    Anything later (no answer in time, connection dropped): the peer may have
    carried it out, so the bridger must neither repeat nor undo it.
    """
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        return PeerFailed(f"{command} could not be sent: {reason}")
    return PeerOutcomeUnknown(f"{command} got no answer, its outcome is unknown: {reason}")


class Connector(Protocol):
    """Outbound commands to one peer.

    Each method either does what it says or raises; the bridger retries
    failures with backoff, so an implementation makes one attempt, bounded by
    a timeout of a few seconds, and need not retry itself. ``connect`` may be
    called again for the same call after a failure or a lost instance, so it
    must tolerate being repeated. It raises ``PeerOutcomeUnknown`` when the
    command may have been carried out without an answer (``send_failure``
    sorts that out), which is never retried, and ``PeerCallGone`` when the
    peer says the caller is gone.
    """

    peer: str
    #: The peer can ring a caller back (``ring_back``): only then are its
    #: waiting callers offered a callback.
    rings_back: bool

    async def connect(self, call: PeerCall, agent: AgentEndpoint) -> None:
        """Connect the waiting caller to the agent's endpoint."""

    async def hangup(self, call: PeerCall) -> None:
        """End the caller's leg at the peer (the call could not be served).

        For a callback whose caller answered, the leg is ``call.leg``."""

    async def ring_back(
        self, call: PeerCall, agent: AgentEndpoint, number: str, ring_seconds: float
    ) -> Ring:
        """Ring the caller of a callback at ``number`` and bridge them to ``agent``.

        ``ring_seconds``: how long it rings before it counts as not answered.
        A peer that learns the outcome while the command runs (ARI, the generic
        PBX) returns once the caller answered and is bridged, and raises
        ``CallerNotReached`` when they did not (``Ring.answered`` true). A peer
        that reports it later (Twilio's status callback) returns once the call
        is placed (``answered`` false), and its adapter reports the outcome
        through ``TelephonyGateway.callback_answered`` or ``callback_missed``.
        Never repeated by the bridger: a ring that may have gone out is not rung twice.
        """
