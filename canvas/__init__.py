"""canvas-rlhf: curate image-text pairs, label preferences, fine-tune diffusion models on them.

One import root. Layers, each importing only the ones below it (tests/test_architecture.py checks):
`canvas.core` (the base), then `canvas.curation`, `canvas.labeling`, `canvas.rlhf`, then
`canvas.pipelines` (Beam jobs wiring curation), then `canvas.cli` and `canvas.loop` on top.
"""

__version__ = "0.1.0"
