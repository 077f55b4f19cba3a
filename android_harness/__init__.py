"""Android harness (installed as kd_edge.android_harness): drives adb and LiteRT benchmark_model."""
