"""Export: packed ternary weights, ONNX graphs with a KV cache, and the torch-free runtime.

Only the torch-free modules (bundle, sampling, runtime, packing) may be imported by the service;
convert, parity and exporter need torch. Nothing is imported here, so importing this package
loads neither.
"""
