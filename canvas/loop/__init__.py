"""The whole loop in one command (`canvas demo`): curate -> generate -> label -> train -> eval -> report."""

from canvas.loop.config import DemoConfig
from canvas.loop.demo import run_demo

__all__ = ["DemoConfig", "run_demo"]
