"""Helpers for the course *Efficient Transformer Inference, hands-on*: loading, timing, memory, quality."""

__version__ = "0.1.0"
