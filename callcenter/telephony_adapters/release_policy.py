"""Which ended calls must be let go of at the telephony peer (pure: state and reason decide).

A call can end on our side while its caller is still connected to the peer,
on hold music or bridged with the agent: an agent ends it from the panel, a
supervisor ends it, the queue gives up at the maximum wait. Nobody at the
peer knows, so unless we say so, the caller waits forever. Every other end
needs nothing from us:

* the peer itself reported the hang-up (every end reason the gateway writes
  starts with ``hangup``, the caller who hung up before the incoming too);
* the bridger ended it ``transferred`` / ``connect_failed``, and hangs it up
  at the peer itself;
* the caller took a callback and was not on a line when the call ended (they
  hung up to be rung back, or did not pick up the ring);
* an agent or a supervisor ended it ``transferred``: the call went elsewhere
  through the phone system, and hanging it up would cut that transfer off.
  Only the queue's own ``transferred`` / ``max_wait`` leaves the caller
  stranded.

The end reason is the one thing all these ends write, so it is what decides.
A supervisor's free-text reason takes part too: one that starts with
``hangup`` says the caller hung up already, and ``max_wait`` on a
``transferred`` call asks for the hang-up the queue's own would get.
"""

from __future__ import annotations

from dataclasses import dataclass

from callcenter.queue.models import CallState
from callcenter.queue.router import MAX_WAIT
from callcenter.telephony_adapters.bridger import CONNECT_FAILED
from callcenter.telephony_adapters.gateway import HANGUP

_ENDED = frozenset({CallState.completed, CallState.abandoned, CallState.transferred})


@dataclass(frozen=True)
class ReleaseDecision:
    """``needed``: send the peer a hang-up. ``why``: said in the log and the release record."""

    needed: bool
    why: str


def by_reason(end_reason: str | None) -> ReleaseDecision | None:
    """The decision for an ended call when its end reason alone makes it, whatever the
    state it ended in and whether its caller was on a line; else None.

    The end records such a decision in its own statement (``finish_call``), so
    no releaser has to claim the call only to find nothing to do.
    """
    if (end_reason or "").startswith(HANGUP):
        return ReleaseDecision(False, "the peer reported the hang-up")
    return None


def decide(
    state: CallState, end_reason: str | None, *, off_the_line: bool = False
) -> ReleaseDecision:
    """Whether a call in ``state``, ended for ``end_reason``, needs a hang-up at its peer.

    ``off_the_line``: a callback call whose caller was on no line at its end.
    """
    if state not in _ENDED:
        return ReleaseDecision(False, f"the call is {state.value}, not ended")
    settled = by_reason(end_reason)
    if settled is not None:
        return settled
    reason = end_reason or ""
    if off_the_line:
        return ReleaseDecision(False, "a callback whose caller was not on the line")
    if state is CallState.transferred:
        if reason == MAX_WAIT:
            return ReleaseDecision(True, "the queue gave up at its maximum wait")
        if reason == CONNECT_FAILED:
            return ReleaseDecision(False, "the bridger hung up the call that never connected")
        return ReleaseDecision(False, "transferred: the call went on through the phone system")
    because = f" ({reason})" if reason else ""
    return ReleaseDecision(True, f"ended {state.value} on our side{because}")
