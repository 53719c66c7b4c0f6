"""canvas-rlhf: shared core (CLI, model presets, sample data) for curation, labeling and fine-tuning."""

from canvas.errors import CanvasError

__all__ = ["CanvasError", "__version__"]
__version__ = "0.1.0"
