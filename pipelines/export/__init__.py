"""The export stage: the self-played student as an ONNX bundle, measured and registered."""
