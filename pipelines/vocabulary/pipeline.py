"""The vocabulary stage: erased feedback purged, records in, validated records + quarantine + tokenizer + report out."""

from kedro.pipeline import Node, Pipeline

from pipelines.vocabulary import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.purge_erased_feedback,
                ["raw_feedback", "params:vocabulary"],
                ["feedback", "erased_record_ids", "erased_records_purged"],
                name="purge_erased_feedback",
            ),
            Node(
                nodes.collect_records,
                ["raw_seed", "feedback", "erased_record_ids", "params:vocabulary.external_sources"],
                ["collected_records", "unreadable_records"],
                name="collect_records",
            ),
            Node(
                nodes.validate,
                ["collected_records", "unreadable_records", "params:vocabulary.validation"],
                ["records", "quarantine", "validation_result"],
                name="validate_records",
            ),
            Node(
                nodes.check_quarantine,
                ["records", "quarantine", "params:vocabulary.max_quarantine_fraction"],
                "records_total",
                name="check_quarantine",
            ),
            Node(
                nodes.build_tokenizer,
                ["records", "teacher_tokenizer", "params:vocabulary.tokenizer"],
                "tokenizer",
                name="build_tokenizer",
            ),
            Node(
                nodes.vocabulary_check,
                ["records", "tokenizer", "params:vocabulary.min_coverage"],
                "vocabulary_check",
                name="check_vocabulary",
            ),
            Node(
                nodes.report,
                ["records_total", "quarantine", "tokenizer", "vocabulary_check", "erased_records_purged"],
                ["vocabulary_report", "vocabulary_metrics"],
                name="report_vocabulary",
            ),
        ]
    )
