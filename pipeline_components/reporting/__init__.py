"""Reading finished runs back out of ML Metadata: the per-scene run report and the vocabulary listing."""
