"""The augmentation stage: validated records in, train and validation sets out."""

from kedro.pipeline import Node, Pipeline

from pipelines.augmentation import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.make_variants,
                ["records", "params:augmentation"],
                ["augmented_records", "variant_stats"],
                name="make_math_variants",
            ),
            Node(
                nodes.split,
                ["augmented_records", "params:augmentation"],
                ["train_unmixed", "validation_records"],
                name="split_train_validation",
            ),
            Node(
                nodes.mix,
                ["train_unmixed", "params:augmentation"],
                ["train_records", "mix_stats"],
                name="mix_domains",
            ),
            Node(
                nodes.report,
                ["variant_stats", "mix_stats", "train_records", "validation_records"],
                ["augmentation_report", "augmentation_metrics"],
                name="report_augmentation",
            ),
        ]
    )
