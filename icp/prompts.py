"""Built-in prompt sets: a small demo batch and the unlabelled set the defaults were measured on.

Both are plain chat instructions written for this project (no benchmark data), so examples, the
overhead benchmark and calibration run anywhere without data files.
"""

from __future__ import annotations

__all__ = ["DEMO_PROMPTS", "CALIBRATION_PROMPTS"]

#: Eight varied instructions: the quickstart and the overhead benchmark.
DEMO_PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain why the sea is salty.",
    "What are three good habits for staying healthy?",
    "Describe a walk through a forest in autumn.",
    "How do vaccines train the immune system?",
    "Write a haiku about the first snow.",
    "What is the difference between weather and climate?",
    "Give advice to someone starting their first job.",
]

#: Sixteen varied instructions: `examples/measure_defaults.py` measured ICP's defaults on them.
CALIBRATION_PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how photosynthesis works to a ten-year-old.",
    "What are the main causes of the French Revolution?",
    "Give me three tips for learning a new programming language.",
    "Describe the city of Paris in the spring.",
    "Why is the sky blue?",
    "Write a poem about the ocean at night.",
    "How does a bicycle stay upright while moving?",
    "Summarise the plot of Romeo and Juliet.",
    "What should I pack for a week-long hiking trip?",
    "Explain the difference between a virus and a bacterium.",
    "Write a letter to a friend you have not seen in years.",
    "What is the capital of Australia, and why was it chosen?",
    "Describe how to make a cup of tea.",
    "List some healthy breakfast ideas.",
    "Tell me about the history of the printing press.",
]
