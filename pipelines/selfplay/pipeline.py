"""The self-play stage: distilled student (and the teacher, as the reference) in, self-played
student + task buffers + report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.selfplay import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.self_play,
                ["selfplay_input_student", "selfplay_input_teacher", "params:selfplay"],
                ["selfplay_student", "selfplay_buffer", "selfplay_heldout", "selfplay_report", "selfplay_metrics",
                 "selfplay_solve_rate_plot"],
                name="self_play",
            ),
        ]
    )
