"""The promotion gate: which exported bundle the service serves by default, and the file that says so.

Rule: the ternary student is champion when its held-out NLL per assistant token is at most
``gate_factor`` x the teacher's 4-bit bundle's NLL (both measured through onnxruntime on the same
validation conversations) *and* its conversation eval passed (no loops, garbage or empty replies
beyond the set rates, bitzero.companion.conversation_eval): a bundle that loops is never promoted
over the teacher, whatever its NLL. Otherwise the teacher's 4-bit bundle is: it is the fallback
that keeps a companion serving, so it stays champion even when its own eval fails, and the reason
says so. A student whose export failed its checks is left out (``left_out``). The export stage moves the
MLflow registered-model alias ``champion`` accordingly and writes ``champion.json`` beside the
bundles, so a service without MLflow knows the local champion. Torch-free and MLflow-free.

``champion.json`` (in the folder that holds the bundle folders, e.g. data/06_models/bundles/)::

    {
      "format": "bitzero-champion", "version": 1,
      "champion": "student" | "teacher",      # which bundle won
      "bundle": "student",                     # the champion's folder, relative to this file
      "model_id": "bitzero-1a2b3c4d",          # its bitzero.json model_id
      "reason": "student NLL 2.10 <= 1.10 x teacher NLL 1.95 = 2.15",
      "gate_factor": 1.1,
      "held_out_nll": {"student": 2.10, "teacher": 1.95},   # student null when it was left out
      "bundles": {"student": "student", "teacher": "teacher"},   # every exported bundle's folder
      "registered_model": "bitzero", "registered_version": 3     # null when not registered
    }

``bitzero.serving.champion`` reads it for the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitzero.export.gate import STUDENT, TEACHER, student_within
from bitzero.files import write_atomically
from bitzero.serving.champion import CHAMPION_FILE, FORMAT, VERSION

CHAMPION = "champion"  # the MLflow registered-model alias


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: which bundle is champion and why."""

    champion: str
    reason: str
    student_nll: float | None  # None: the student was left out
    teacher_nll: float
    gate_factor: float

    @property
    def bundles(self) -> tuple[str, ...]:
        """The bundles this decision was made among (the folders beside champion.json)."""
        return (TEACHER,) if self.student_nll is None else (STUDENT, TEACHER)


Verdict = tuple[bool, str]  # a bundle's conversation eval: (passed, why)


def decide(student_nll: float, teacher_nll: float, gate_factor: float,
           conversation: Mapping[str, Verdict] | None = None) -> Decision:
    """The student wins when ``student_nll <= gate_factor * teacher_nll`` and its conversation
    eval (``conversation[STUDENT]``, when given) passed; else the teacher."""
    within = student_within(student_nll, teacher_nll, gate_factor)
    bound = gate_factor * teacher_nll
    conversation = conversation or {}
    talks, why = conversation.get(STUDENT, (True, ""))
    champion = STUDENT if within and talks else TEACHER
    reason = f"student NLL {student_nll:.4f} {'<=' if within else '>'} {gate_factor:g} x teacher-4bit NLL " \
             f"{teacher_nll:.4f} = {bound:.4f}"
    if not talks:
        reason += f"; the student's conversation eval failed ({why})"
    reason += f": the {champion} is champion"
    teacher_talks, teacher_why = conversation.get(TEACHER, (True, ""))
    if champion == TEACHER and not teacher_talks:
        reason += f", as the fallback, although its own conversation eval failed ({teacher_why})"
    return Decision(champion, reason, student_nll, teacher_nll, gate_factor)


def left_out(failure: str, teacher_nll: float, gate_factor: float) -> Decision:
    """The teacher is champion because the student's export failed its checks (``failure`` says how)."""
    reason = f"the student was left out: {failure}; the teacher is champion"
    return Decision(TEACHER, reason, None, teacher_nll, gate_factor)


def write_champion(
    folder: str | Path, decision: Decision, model_ids: dict[str, str], registration: dict[str, Any] | None = None,
) -> Path:
    """champion.json in ``folder`` (which holds the bundle folders named ``student`` and ``teacher``)."""
    registration = registration or {}
    content = {
        "format": FORMAT,
        "version": VERSION,
        "champion": decision.champion,
        "bundle": decision.champion,
        "model_id": model_ids[decision.champion],
        "reason": decision.reason,
        "gate_factor": decision.gate_factor,
        "held_out_nll": {STUDENT: decision.student_nll, TEACHER: decision.teacher_nll},
        "bundles": {kind: kind for kind in decision.bundles},
        "registered_model": registration.get("registered_model"),
        "registered_version": registration.get("version"),
    }
    return write_atomically(Path(folder) / CHAMPION_FILE, json.dumps(content, indent=2).encode("utf-8"))
