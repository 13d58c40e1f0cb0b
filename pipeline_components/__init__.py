"""The pipeline: its factory (pipeline.py, eval_config.py, spans.py), its custom components
(components/), how it is run (orchestration/), how runs are read back (reporting/), and the CLI."""
