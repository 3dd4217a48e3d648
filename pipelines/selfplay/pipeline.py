"""The self-play stage: the distillation report, the distilled student, the teacher and the
validation conversations in; the served lineage (chosen here, once) self-played, its task buffers,
the lineage record and the report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.selfplay import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.choose_lineage,
                ["distillation_report", "params:export.gate_factor"],
                ["selfplay_lineage", "lineage_record"],
                name="choose_lineage",
            ),
            Node(
                nodes.self_play,
                ["selfplay_lineage", "selfplay_input_student", "selfplay_input_teacher", "validation_records",
                 "params:selfplay"],
                ["selfplay_model", "selfplay_buffer", "selfplay_heldout", "selfplay_report", "selfplay_metrics",
                 "selfplay_solve_rate_plot"],
                name="self_play",
            ),
        ]
    )
