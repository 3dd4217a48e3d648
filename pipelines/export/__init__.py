"""The export stage: the self-played student and the teacher as ONNX bundles, measured, registered, gated."""
