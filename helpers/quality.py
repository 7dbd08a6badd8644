"""Quality: perplexity on a fixed evaluation text that ships with the course, and greedy answers to prompts."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["PROMPTS", "ask", "chat_inputs", "evaluation_text", "greedy_answers", "input_device", "perplexity"]

# the docstrings of fifteen standard-library modules (textwrap, json, ...) as CPython 3.11 prints them, frozen here
EVAL_TEXT = Path(__file__).parent / "data" / "eval_text.txt"
PROMPTS = ("What is the capital of France?", "Name three primary colors.", "What is 12 plus 30?")


def evaluation_text() -> str:
    """Return the course's fixed evaluation text."""
    return EVAL_TEXT.read_text(encoding="utf-8")


def input_device(model: torch.nn.Module) -> torch.device:
    """Return the device that a model's inputs belong on (the embedding's, for models split across devices)."""
    return model.get_input_embeddings().weight.device


@torch.inference_mode()
def perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 1024, window: int = 512) -> float:
    """Return the perplexity of the model on the first `max_tokens` tokens of the evaluation text, in windows."""
    ids = tokenizer(evaluation_text(), return_tensors="pt").input_ids[0, :max_tokens]
    device = input_device(model)
    total_nll, counted = 0.0, 0
    for start in range(0, ids.numel() - 1, window):
        chunk = ids[start : start + window].unsqueeze(0).to(device)
        if chunk.shape[1] < 2:
            break
        loss = model(input_ids=chunk, labels=chunk).loss.float().item()
        total_nll += loss * (chunk.shape[1] - 1)
        counted += chunk.shape[1] - 1
    return math.exp(total_nll / counted)


def chat_inputs(tokenizer: PreTrainedTokenizerBase, question: str, device: torch.device) -> dict[str, torch.Tensor]:
    """Return model inputs for one user question, through the chat template when the tokenizer has one."""
    if tokenizer.chat_template:
        encoded = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)
    else:
        encoded = tokenizer(question, return_tensors="pt")
    return {key: value.to(device) for key, value in encoded.items()}


@torch.inference_mode()
def ask(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, question: str, max_new_tokens: int = 24) -> str:
    """Return the model's greedy answer to one question."""
    inputs = chat_inputs(tokenizer, question, input_device(model))
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def greedy_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: tuple[str, ...] = PROMPTS,
                   max_new_tokens: int = 24) -> dict[str, str]:
    """Return the greedy answer to each prompt."""
    return {prompt: ask(model, tokenizer, prompt, max_new_tokens) for prompt in prompts}
