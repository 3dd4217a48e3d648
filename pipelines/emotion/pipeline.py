"""The emotion stage: training records (or GoEmotions) in, the service's emotion classifier out."""

from kedro.pipeline import Node, Pipeline

from pipelines.emotion import nodes


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.train_emotion,
                ["records", "params:emotion"],
                ["emotion_classifier", "emotion_report", "emotion_metrics", "emotion_confusion"],
                name="train_emotion",
            ),
        ]
    )
