"""The pipeline factory and the project's custom TFX components."""
