"""The personalize stage: the self-played student, the records (feedback pairs) and the validation
set in; the personalized student and its report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.personalize import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.personalize_student,
                ["personalize_input_student", "records", "validation_records", "params:personalize"],
                ["personalized_student", "personalize_report", "personalize_metrics"],
                name="personalize_student",
            ),
        ]
    )
