"""One root exception and one subclass per domain failure.

The HTTP layer maps these to problem bodies by their ``status``; nothing below
the HTTP layer knows about HTTP beyond that number.
"""

from __future__ import annotations

from typing import Any


class CallCenterError(Exception):
    """Root of every error the service raises on purpose."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class BadRequest(CallCenterError):
    status = 400
    title = "Bad request"


class Unauthorized(CallCenterError):
    status = 401
    title = "Unauthorized"


class Forbidden(CallCenterError):
    status = 403
    title = "Forbidden"


class NotFound(CallCenterError):
    status = 404
    title = "Not found"


class Conflict(CallCenterError):
    status = 409
    title = "Conflict"


class RequestTimeout(CallCenterError):
    """A body that did not arrive in time (a slow or stalled client)."""

    status = 408
    title = "Request timeout"


class MisdirectedRequest(CallCenterError):
    """A request for a host this service does not answer for."""

    status = 421
    title = "Misdirected request"


class UnsupportedMediaType(CallCenterError):
    status = 415
    title = "Unsupported media type"


class TooManyRequests(CallCenterError):
    """Over a limit; ``retry_after`` (seconds) goes into the answer's ``Retry-After``."""

    status = 429
    title = "Too many requests"


class PayloadTooLarge(CallCenterError):
    status = 413
    title = "Payload too large"


class Unprocessable(CallCenterError):
    status = 422
    title = "Unprocessable entity"


class InvalidPhoneNumber(Unprocessable):
    title = "Invalid phone number"


class UnknownTier(Unprocessable):
    title = "Unknown tier"


class DuplicateCustomerNumber(Conflict):
    title = "Duplicate customer number"


class DatabaseNewerThanCode(CallCenterError):
    """The database has migrations this code does not know: refuse to run on it."""

    title = "Database is newer than this code"


class MalformedEvent(BadRequest):
    """A telephony peer sent something that is not a well-formed event."""

    title = "Malformed event"


class InvalidSignature(Forbidden):
    """A webhook whose signature is missing, wrong or too old: nothing of it is stored."""

    title = "Invalid signature"


class PeerFailed(CallCenterError):
    """A telephony peer refused or did not answer a command we sent it."""

    status = 502
    title = "Telephony peer failed"


class PeerRequestFailed(PeerFailed):
    """A peer's HTTP API answered a command with an error, or did not answer."""

    def __init__(self, detail: str, *, peer_status: int | None = None) -> None:
        super().__init__(detail)
        #: The peer's HTTP status (404: the channel is gone), None when it did not answer.
        self.peer_status = peer_status


class InvalidAnswer(Unprocessable):
    """An answer that does not fit its question's kind (text for a number, a choice not listed)."""

    title = "Invalid answer"


class NotPendingQuestion(Conflict):
    """An answer to a question other than the one pending for the customer."""

    title = "Not the pending question"


class InvalidBank(Unprocessable):
    """A question or treatment that would break the bank: an unknown key in a
    condition, a cycle among questions, a compared value its question can never have."""

    title = "Invalid question bank"


class BankFileError(Unprocessable):
    """A bank file that cannot be loaded; ``errors`` holds every ``file:line: what`` found."""

    title = "Invalid bank file"

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors), errors=[{"message": e} for e in errors])
        self.errors = errors


class PeerCallGone(PeerFailed):
    """The peer says the call is over there (the caller hung up): commanding it again
    cannot succeed, so the call is hung up on our side instead of retried."""

    title = "Call gone at the telephony peer"


class AgentNotReached(PeerFailed):
    """The agent's phone was rung and did not answer (rang out, busy, failed): the peer's
    outcome is known, and ringing the same phone again at once would only keep the caller
    waiting, so the call goes back to its queue and the agent becomes not responding."""

    title = "Agent's phone did not answer"


class CallerNotReached(PeerFailed):
    """A callback rang the caller and nobody answered (rang out, busy, refused, failed):
    the agent is freed and the call waits out the queue's retry delay in its place.
    ``result``: ``no_answer`` (rang out or busy) or ``failed`` (it could not ring)."""

    title = "Caller did not answer the callback"

    def __init__(self, detail: str, *, result: str = "no_answer") -> None:
        super().__init__(detail)
        self.result = result


class PeerOutcomeUnknown(PeerFailed):
    """A command reached the peer (or may have) but no answer came: it may or may not
    have been carried out, so sending it again or undoing it are both unsafe."""

    title = "Telephony peer did not answer"
