"""Serving exported bundles, torch-free: the bundle's manifest and checksums, the champion file, the
onnxruntime / onnxruntime-genai runtime and sampling. The service imports this package and never
bitzero.export (the build side: packing, graphs, parity, the promotion gate, the registry).
Nothing is imported here, so importing the package loads none of them."""
