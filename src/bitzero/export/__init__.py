"""Export, the build side: packed weights, ONNX graphs with a KV cache, parity, held-out NLL, the
promotion gate and the registry. What serving needs lives in bitzero.serving.

convert, parity and exporter need torch, registry needs MLflow. Nothing is imported here, so
importing this package loads none of them.
"""
