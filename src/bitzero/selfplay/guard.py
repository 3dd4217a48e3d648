"""Self-play must not cost the served model its conversation.

Self-play teaches short program and arithmetic answers; a candidate that solves more of them may
still talk worse, and the served lineage is the model users talk to. So a candidate ships only if
its held-out NLL per assistant token on validation conversations is at most ``tolerance`` nats worse
than the stage input's (the same guard personalize applies to its DPO step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bitzero.model import BitZeroLM
from bitzero.train.batching import Example
from bitzero.train.heldout import held_out_nll

Guard = Callable[[BitZeroLM], dict[str, Any]]  # a candidate -> its figures, "passed" among them


def chat_guard(reference: BitZeroLM, conversations: Sequence[Example], tolerance: float, seq_len: int,
               pad_id: int, batch_size: int = 8) -> Guard:
    """A guard comparing a candidate's conversation NLL with ``reference``'s (measured once, when
    the first candidate is judged)."""
    if not conversations:
        raise ValueError("the chat guard needs validation conversations with assistant turns")
    measured: dict[str, float] = {}

    def nll(model: BitZeroLM) -> float:
        return float(held_out_nll(model, {"conversations": conversations}, batch_size, seq_len, pad_id)["overall"])

    def judge(candidate: BitZeroLM) -> dict[str, Any]:
        if "before" not in measured:
            measured["before"] = nll(reference)
        before, after = measured["before"], nll(candidate)
        return {"chat_nll_before": before, "chat_nll_after": after, "chat_nll_change": after - before,
                "nll_tolerance": tolerance, "passed": after - before <= tolerance}

    return judge
