"""Export: packed weights, ONNX graphs with a KV cache, the torch-free runtime and the promotion gate.

Only the torch-free modules (bundle, sampling, runtime, packing, heldout, promotion) may be imported
by the service; convert, parity and exporter need torch, registry needs MLflow. Nothing is imported
here, so importing this package loads none of them.
"""
