"""eyechart: an eye exam for OpenAI-compatible vision chat APIs (conform, load, serve)."""

__version__ = "0.1.0"
