"""Which lineage self-play and personalize train: the one the promotion gate is predicted to serve.

The gate (bitzero.export.promotion, its rule in bitzero.export.gate) serves the student when its held-out NLL per assistant token is
at most ``gate_factor`` x the teacher's. Learning reaches users only if it goes into the bundle the
gate then serves, but the gate runs after training. So the choice is made once, before self-play,
by the same rule on the figures available then: the distillation stage's held-out NLL of the student
and of the full-precision teacher, on the same validation conversations, against the export's own
``gate_factor``. Why that predicts the gate:

* same quantity (NLL per assistant token of validation.jsonl conversations), same rule, same factor;
* the student's PyTorch forward already computes what its bundle does (ternary codes, per-token int8
  activations; the export's layer-wise parity holds the two together);
* the export measures the teacher at 4 bits, which usually costs it a little NLL: the bound is then a
  little looser there, so a student predicted served meets the gate's NLL test (up to sampling);
* what cannot be predicted here: the export's NLL uses its own sample of conversations, and the
  conversation eval (loops, garbage) is only run on the exported bundles. The export reports whether
  its gate agreed with this prediction.

Torch-free and MLflow-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bitzero.errors import ExportPackageError
from bitzero.export.gate import STUDENT, TEACHER, student_within

LINEAGES = (STUDENT, TEACHER)
FORMAT = "bitzero-lineage"


class LineageError(ExportPackageError, ValueError):
    """A lineage record or a distillation report that cannot say which lineage is served."""


def predict_served(student_nll: float, teacher_nll: float, gate_factor: float) -> dict[str, Any]:
    """The lineage record: which model the gate will serve, by its NLL rule on these figures."""
    served = STUDENT if student_within(student_nll, teacher_nll, gate_factor) else TEACHER
    bound = gate_factor * teacher_nll
    reason = (f"distilled student NLL {student_nll:.4f} {'<=' if served == STUDENT else '>'} {gate_factor:g} x "
              f"teacher NLL {teacher_nll:.4f} = {bound:.4f} (the export gate's NLL rule, before export): "
              f"self-play and personalize train the {served}")
    return {"format": FORMAT, "served": served, "reason": reason, "student_nll": student_nll,
            "teacher_nll": teacher_nll, "ratio": student_nll / teacher_nll if teacher_nll else None,
            "gate_factor": gate_factor}


def from_distillation(report: Mapping[str, Any], gate_factor: float) -> dict[str, Any]:
    """The lineage record from distillation.json's held-out NLL of the student and the fp32 teacher."""
    figures = report.get("held_out_nll") or {}
    if not isinstance(figures.get("student"), (int, float)) or not isinstance(figures.get("teacher_fp32"), (int, float)):
        raise LineageError("the distillation report has no held_out_nll.student and held_out_nll.teacher_fp32: "
                           "run the distillation stage first")
    return predict_served(float(figures["student"]), float(figures["teacher_fp32"]), gate_factor)


def served(record: Mapping[str, Any]) -> str:
    """The served lineage a record names, checked."""
    if record.get("format") != FORMAT or record.get("served") not in LINEAGES:
        raise LineageError(f"not a lineage record (format {FORMAT!r}, served one of {LINEAGES}): {dict(record)!r}")
    return str(record["served"])


def check_checkpoint(record: Mapping[str, Any], metadata: Mapping[str, Any], what: str) -> str:
    """The served lineage, after checking that the checkpoint ``what`` belongs to it (its metadata
    says so): a checkpoint left from a run on the other lineage is stale, not silently trained on."""
    lineage = served(record)
    if metadata.get("lineage") != lineage:
        raise LineageError(f"{what} belongs to the {metadata.get('lineage')!r} lineage but the lineage record "
                           f"names the {lineage!r}: re-run the selfplay stage (dvc repro)")
    return lineage
