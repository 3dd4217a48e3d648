"""The export stage: self-played student and emotion classifier in, ONNX bundle + registry entry + report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.export import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.export_model,
                ["export_checkpoint", "export_emotion_classifier", "validation_records", "params:export"],
                "export_manifest",
                name="export_bundle",
            ),
            Node(nodes.register, ["export_manifest", "params:export"], "export_registration", name="register_model"),
            Node(
                nodes.report,
                ["export_manifest", "export_registration"],
                ["export_report", "export_metrics"],
                name="report_export",
            ),
        ]
    )
