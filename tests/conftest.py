"""Shared fixtures: the real packaged model, loaded once per test session."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M real weights in float32 on the CPU, with its tokenizer."""
    from transformers import AutoModelForCausalLM

    from helpers.models import load_tokenizer, pretrained_path

    model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=torch.float32).eval()
    return model, load_tokenizer("smollm2-135m")
