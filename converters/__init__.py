"""Export backends (installed as kd_edge.converters): TFLite, ONNX and Core ML behind one registry."""
