"""BitZero's Kedro pipelines, one folder a stage: pipeline.py wires, nodes.py adapts."""
