"""The distillation stage: teacher, tokenizer and train/validation records in; the ternary
student (conversion ladder, then KD), the NLL table of teacher / PTQ / student / CE-only, the
ladder's table and the quantization report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.distillation import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.build_examples,
                ["tokenizer", "train_records", "validation_records", "params:distillation"],
                ["distillation_train_examples", "distillation_validation_sets", "distillation_data_stats"],
                name="build_examples",
            ),
            Node(nodes.prepare_teacher, ["teacher_checkpoint", "tokenizer"], "teacher_model", name="prepare_teacher"),
            Node(
                nodes.measure_teacher,
                ["teacher_model", "tokenizer", "distillation_validation_sets", "params:distillation"],
                "teacher_nll",
                name="measure_teacher",
            ),
            Node(
                nodes.convert_student,
                ["teacher_model", "tokenizer", "distillation_train_examples", "distillation_validation_sets",
                 "params:distillation"],
                ["converted_student", "ptq_nll", "conversion_ladder"],
                name="convert_student",
            ),
            Node(
                nodes.train_student,
                ["teacher_model", "converted_student", "tokenizer", "distillation_train_examples", "distillation_validation_sets",
                 "params:distillation"],
                ["student_model", "student_checkpoint", "student_summary"],
                name="train_student",
            ),
            Node(
                nodes.train_ce_only,
                ["teacher_model", "converted_student", "tokenizer", "distillation_train_examples", "distillation_validation_sets",
                 "params:distillation"],
                "ce_only_summary",
                name="train_ce_only",
            ),
            Node(
                nodes.report,
                ["teacher_nll", "ptq_nll", "conversion_ladder", "student_summary", "ce_only_summary", "distillation_data_stats",
                 "student_model", "params:distillation"],
                ["distillation_report", "quantization_report", "distillation_metrics", "distillation_loss_plot",
                 "quantization_shares_plot"],
                name="report_distillation",
            ),
        ]
    )
