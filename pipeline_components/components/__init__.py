"""The project's custom TFX components, each where TFX has none that fits (the module docstring says why).

Everything here is part of the compiled pipeline: editing a module here makes
the compiled pipeline stale (orchestration/compiled.py fingerprints it).
"""
