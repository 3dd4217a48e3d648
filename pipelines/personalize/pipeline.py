"""The personalize stage: the lineage record, the self-played model of the served lineage, the
records (feedback pairs) and the validation set in; the personalized model and its report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.personalize import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.personalize_model,
                ["lineage_record", "selfplay_model", "records", "validation_records", "params:personalize"],
                ["personalized_model", "personalize_report", "personalize_metrics"],
                name="personalize_model",
            ),
        ]
    )
