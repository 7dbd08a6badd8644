"""Quality: perplexity on a fixed evaluation text that ships with the course, and greedy answers to prompts."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["PROMPTS", "ask", "chat_inputs", "evaluation_text", "input_device", "perplexity", "perplexity_ratio",
           "token_losses"]

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
def token_losses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 1024, window: int = 512) -> torch.Tensor:
    """Return the negative log-likelihood of each predicted token of the first `max_tokens` of the text, in disjoint windows."""
    ids = tokenizer(evaluation_text(), return_tensors="pt").input_ids[0, :max_tokens].to(input_device(model))
    return torch.cat([F.cross_entropy(model(input_ids=c[None]).logits[0, :-1].float(), c[1:], reduction="none").cpu()
                      for c in ids.split(window) if c.numel() >= 2])


def perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 1024, window: int = 512) -> float:
    """Return the perplexity of the model on the first `max_tokens` tokens of the evaluation text: exp(mean token loss)."""
    return token_losses(model, tokenizer, max_tokens=max_tokens, window=window).double().mean().exp().item()


def perplexity_ratio(losses: torch.Tensor, reference: torch.Tensor, block: int = 32) -> tuple[float, float, float]:
    """Return the perplexity ratio of two models on the same tokens, and that ratio at -2 and +2 standard errors.

    The standard error is the text's, of the mean per-token loss difference, estimated from that difference's means
    over blocks of `block` consecutive tokens (neighbouring tokens may be correlated; a block keeps them in one sample).
    """
    difference = (losses - reference).double()
    means = difference[: difference.numel() // block * block].view(-1, block).mean(dim=1)
    if means.numel() < 2:
        raise ValueError(f"{difference.numel()} tokens make fewer than two blocks of {block}: evaluate more tokens")
    center, error = difference.mean().item(), 2 * means.std().item() / means.numel() ** 0.5
    return math.exp(center), math.exp(center - error), math.exp(center + error)


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
