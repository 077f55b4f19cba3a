"""DBlur-layout data: pair discovery and checks, tf.data pipelines, synthetic blur."""
