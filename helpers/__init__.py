"""Helpers for the course *Efficient Transformer Inference, hands-on*: loading, timing, memory, quality."""
