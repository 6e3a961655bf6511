"""Which ended calls need a hang-up at their peer: the pure rule, case by case."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.queue.models import CallState
from callcenter.telephony_adapters.release_policy import by_reason, decide

completed, abandoned, transferred = (
    CallState.completed,
    CallState.abandoned,
    CallState.transferred,
)


@pytest.mark.parametrize(
    ("state", "reason", "needed"),
    [
        # Ended on our side: an agent's panel, a supervisor, the queue's maximum wait.
        (completed, None, True),
        (abandoned, None, True),
        (abandoned, "caller left a voicemail", True),
        (transferred, "max_wait", True),
        # The peer reported the hang-up (every reason the gateway writes).
        (completed, "hangup", False),
        (completed, "hangup: completed", False),
        (abandoned, "hangup: queue hangup", False),
        (abandoned, "hangup_before_incoming", False),
        (completed, "hangup: gone: Twilio answered the call update with 400", False),
        # Went elsewhere through the phone system, or the bridger hung up itself.
        (transferred, None, False),
        (transferred, "to the billing team", False),
        (transferred, "connect_failed", False),
        # Not ended: nothing to let go of.
        (CallState.waiting, None, False),
        (CallState.connected, None, False),
    ],
)
def test_who_is_hung_up(state: CallState, reason: str | None, needed: bool) -> None:
    decision = decide(state, reason)
    assert decision.needed is needed
    assert decision.why


def test_the_reason_is_said() -> None:
    assert decide(transferred, "max_wait").why == "the queue gave up at its maximum wait"
    assert decide(abandoned, "noted").why == "ended abandoned on our side (noted)"
    assert decide(completed, "hangup: x").why == "the peer reported the hang-up"
    assert "phone system" in decide(transferred, None).why


@given(
    st.one_of(
        st.none(),
        st.text(max_size=30),
        st.text(max_size=30).map(lambda t: f"hangup{t}"),
        st.sampled_from(["max_wait", "connect_failed", "hangup", "hangup: normal", ""]),
    )
)
def test_a_decision_by_reason_alone_is_the_one_every_ended_call_gets(reason: str | None) -> None:
    """What the end records by its reason (``finish_call``) is what the releaser would
    decide for that call, whatever it ended as and wherever its caller was."""
    settled = by_reason(reason)
    decisions = {
        decide(state, reason, off_the_line=off)
        for state in (completed, abandoned, transferred)
        for off in (False, True)
    }
    if settled is not None:
        assert decisions == {settled}
    assert (settled is not None) == (reason or "").startswith("hangup")
