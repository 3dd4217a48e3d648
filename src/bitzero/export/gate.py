"""The promotion gate's NLL rule on its own, without the champion file and serving: the gate
(bitzero.export.promotion) applies it to the exported bundles, and bitzero.export.lineage to the
distilled models before training, to predict it."""

from __future__ import annotations

import math

STUDENT, TEACHER = "student", "teacher"


def student_within(student_nll: float, teacher_nll: float, gate_factor: float) -> bool:
    """Whether ``student_nll <= gate_factor * teacher_nll``, after checking the figures."""
    if not gate_factor >= 1.0 or not math.isfinite(gate_factor):
        raise ValueError(f"gate_factor must be a finite number >= 1, got {gate_factor!r}")
    if not (math.isfinite(student_nll) and math.isfinite(teacher_nll)) or min(student_nll, teacher_nll) < 0:
        raise ValueError(f"held-out NLLs must be finite and >= 0, got {student_nll!r} and {teacher_nll!r}")
    return student_nll <= gate_factor * teacher_nll
