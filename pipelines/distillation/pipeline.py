"""The distillation stage: tokenizer and train/validation records in; teacher, student, report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.distillation import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.build_examples,
                ["tokenizer", "train_records", "validation_records", "params:distillation"],
                ["distillation_train_examples", "distillation_validation_examples", "distillation_data_stats"],
                name="build_examples",
            ),
            Node(
                nodes.train_teacher,
                ["tokenizer", "distillation_train_examples", "distillation_validation_examples",
                 "params:distillation"],
                ["teacher_model", "teacher_checkpoint", "teacher_summary"],
                name="train_teacher",
            ),
            Node(
                nodes.train_student,
                ["teacher_model", "tokenizer", "distillation_train_examples",
                 "distillation_validation_examples", "params:distillation"],
                ["student_model", "student_checkpoint", "student_summary"],
                name="train_student",
            ),
            Node(
                nodes.train_baseline,
                ["tokenizer", "distillation_train_examples", "distillation_validation_examples",
                 "params:distillation"],
                "baseline_summary",
                name="train_baseline",
            ),
            Node(
                nodes.report,
                ["teacher_summary", "student_summary", "baseline_summary", "distillation_data_stats",
                 "student_model", "params:distillation"],
                ["distillation_report", "quantization_report", "distillation_metrics"],
                name="report_distillation",
            ),
        ]
    )
