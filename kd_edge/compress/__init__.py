"""Compression: tfmot pruning, real filter removal, quantization-aware training, calibration."""
