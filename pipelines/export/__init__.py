"""The export stage: the student and the teacher as ONNX bundles (the served lineage trained), measured, registered, gated."""
