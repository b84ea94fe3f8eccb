"""LLM Stream Gateway: a zero-buffering SSE gateway in front of LLM providers."""

__version__ = "0.1.0"
