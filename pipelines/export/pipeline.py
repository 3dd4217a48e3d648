"""The export stage: the lineage record, the served lineage's trained checkpoint, the distilled
student, the teacher, validation records and emotion classifier in; two ONNX bundles, two registry
versions, the `champion` alias, champion.json and a report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.export import nodes

INPUTS = ["export_emotion_classifier", "export_embedder", "validation_records", "params:export"]


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(nodes.pick_checkpoints, ["export_lineage", "export_trained_checkpoint", "export_student_checkpoint",
                                          "export_teacher_checkpoint"],
                 ["export_student_source", "export_teacher_source"], name="pick_checkpoints"),
            Node(nodes.export_student, ["export_student_source", *INPUTS], "export_student_manifest",
                 name="export_student"),
            Node(nodes.export_teacher, ["export_teacher_source", *INPUTS], "export_teacher_manifest",
                 name="export_teacher"),
            Node(nodes.promote, ["export_student_manifest", "export_teacher_manifest", "params:export"],
                 "export_promotion", name="promote_champion"),
            Node(nodes.report, ["export_student_manifest", "export_teacher_manifest", "export_promotion",
                                "export_lineage"],
                 ["export_report", "export_metrics", "conversation_eval_plot"], name="report_export"),
        ]
    )
