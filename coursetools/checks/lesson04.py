"""Lesson 04's exercises: write the int8 BitsAndBytesConfig that skips modules, and predict int8's speed at batch 1."""

from __future__ import annotations

from typing import Any

from torch import nn

from coursetools.checks import Call, Prediction
from helpers.outliers import outlier_features

__all__ = ["EXERCISES"]

MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")


def kept_in_16_bit(model: nn.Module, skip_modules: list[str] | None) -> set[str]:
    """Return the linear layers that transformers' own rule (the one `from_pretrained` applies) leaves unconverted."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    from helpers.quantization import unconverted_modules

    skipped = unconverted_modules(model, skip_modules)
    return {name for name, module in model.named_modules() if isinstance(module, nn.Linear)
            and not should_convert_module(name, skipped)}


def check_call(answer: Any, model: nn.Module) -> str | None:
    """An int8 config with threshold 6.0 that keeps lm_head and every linear layer of the last layer's MLP in 16-bit."""
    from transformers import BitsAndBytesConfig

    if not isinstance(answer, BitsAndBytesConfig):
        return "write a transformers.BitsAndBytesConfig(...) with load_in_8bit=True"
    if not answer.load_in_8bit:
        return "set load_in_8bit=True: LLM.int8() is the 8-bit method (load_in_4bit is lesson 03's)"
    if answer.llm_int8_threshold != 6.0:
        return f"llm_int8_threshold is {answer.llm_int8_threshold}; the exercise asks for 6.0"
    skip = answer.llm_int8_skip_modules
    if skip is None:
        return "llm_int8_skip_modules is None, so transformers keeps only its default list (here lm_head): name the modules"
    if not all(isinstance(pattern, str) for pattern in skip):
        return "llm_int8_skip_modules is a list of module names (strings)"
    last = f"model.layers.{model.config.num_hidden_layers - 1}.mlp"
    output = next(name for name, module in model.named_modules() if module is model.get_output_embeddings())
    wanted = {output} | {f"{last}.{linear}" for linear in MLP_LINEARS}
    kept = kept_in_16_bit(model, skip)
    if output not in kept:
        return (f"{output} would be quantized: a list in llm_int8_skip_modules replaces transformers' default list "
                f"(which holds {output}), so name it too")
    extra = sorted(kept - wanted)
    if extra:
        culprits = [p for p in skip if kept_in_16_bit(model, [p]) & set(extra)]
        return (f"{len(extra)} other linear layers would stay 16-bit too (e.g. {extra[0]}): {culprits} matches them "
                f"(a name matches a module from the start of its name, or as the end of it)")
    missing = sorted(wanted - kept)
    if missing:
        idle = [p for p in skip if not kept_in_16_bit(model, [p]) - {output}]
        return (f"{', '.join(missing)} would still be int8; {idle} matches no linear layer besides {output}: write the "
                f"full name from the start ('{last}' keeps its three linear layers) or a name's end")
    return None


def compare_predict(answer: bool, ratio: tuple[float, float, float]) -> tuple[bool, str]:
    """Compare "int8 decodes slower than float16 at batch 1" with the per-round int8/float16 decode-rate ratios."""
    median, low, high = ratio
    slower = high < 1.0
    if slower:
        measured = (f"int8 decoded at {median:.2f}x float16's rate (every round below 1: {low:.2f}-{high:.2f}), so it "
                    "is slower here: reading half the weight bytes saved less than the extra work cost (each int8 layer "
                    "quantizes its input, looks for outlier columns and may run a second, 16-bit product; which step "
                    "costs the time is not measured here)")
    elif low > 1.0:
        measured = (f"int8 decoded at {median:.2f}x float16's rate (every round above 1: {low:.2f}-{high:.2f}), so it "
                    "is faster here: reading half the weight bytes saved more than the extra quantize and outlier steps cost")
    else:
        measured = (f"int8 decoded at {median:.2f}x float16's rate, but the rounds ranged {low:.2f}-{high:.2f} across 1: "
                    "no measurable difference on this machine, so it is not slower")
    return answer == slower, measured


def check_answer(answer: Any, x: Any) -> str | None:
    """Count of input columns LLM.int8() sends through the 16-bit product at threshold 3.0."""
    expected = len(outlier_features(x, 3.0))
    if isinstance(answer, int) and not isinstance(answer, bool) and answer == expected:
        return None
    return "a column is an outlier when any token's |value| in it reaches the threshold; count such columns of x"


EXERCISES = {
    "04": Call(check_answer),
    "04-call": Call(check_call),
    "04-predict": Prediction("int8 (threshold 6.0) decodes slower than float16 at batch 1 on this machine: True or False",
                             compare_predict),
}
