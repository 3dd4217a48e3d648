"""The teacher stage: a local Hugging Face folder or GGUF file in; checkpoint, tokenizer, report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.teacher import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.import_teacher,
                ["params:teacher"],
                ["teacher_checkpoint", "teacher_tokenizer", "teacher_facts"],
                name="import_teacher",
            ),
            Node(
                nodes.try_teacher,
                ["teacher_checkpoint", "teacher_tokenizer", "teacher_facts", "params:teacher"],
                ["teacher_report", "teacher_metrics"],
                name="try_teacher",
            ),
        ]
    )
