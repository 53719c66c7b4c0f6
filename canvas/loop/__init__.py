"""The whole loop in one command (`canvas demo`): curate -> generate -> label -> train -> eval -> report."""

from canvas.loop.demo import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
