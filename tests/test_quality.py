import hashlib

from helpers.quality import ask, evaluation_text, perplexity

EVAL_TEXT_SHA256 = "7590c0c584770ab626654215ed2a68c7946c26e10a4b35e23bb2cd9feff0de2c"


def test_evaluation_text_is_fixed():
    text = evaluation_text()
    assert len(text) > 50_000
    assert hashlib.sha256(text.encode()).hexdigest() == EVAL_TEXT_SHA256


def test_perplexity_of_real_model_is_plausible_and_window_independent(smollm2):
    model, tokenizer = smollm2
    ppl = perplexity(model, tokenizer, max_tokens=256, window=256)
    assert 5 < ppl < 40
    smaller_windows = perplexity(model, tokenizer, max_tokens=256, window=128)
    assert smaller_windows > ppl  # less context per token: the model is more surprised


def test_greedy_answers_are_deterministic(smollm2):
    model, tokenizer = smollm2
    first = ask(model, tokenizer, "Name three primary colors.", max_new_tokens=8)
    assert first == ask(model, tokenizer, "Name three primary colors.", max_new_tokens=8)


def test_token_losses_give_the_perplexity_and_one_loss_per_predicted_token(smollm2):
    import math

    from helpers.quality import token_losses

    model, tokenizer = smollm2
    losses = token_losses(model, tokenizer, max_tokens=256, window=128)
    assert losses.shape == (254,)  # two windows of 128 tokens, 127 predictions each
    assert math.isclose(math.exp(losses.double().mean().item()), perplexity(model, tokenizer, max_tokens=256, window=128),
                        rel_tol=1e-6)


def test_perplexity_ratio_holds_1_for_noise_and_not_for_a_shift():
    import math

    import pytest
    import torch

    from helpers.quality import perplexity_ratio

    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(4096, generator=generator) * 5
    noisy = reference + 0.2 * torch.randn(4096, generator=generator)  # the same model, up to per-token noise
    ratio, low, high = perplexity_ratio(noisy, reference)
    assert low < ratio < high and low <= 1.0 <= high
    assert math.isclose(ratio, math.exp((noisy - reference).double().mean().item()), rel_tol=1e-9)
    worse = noisy + 0.05  # every token 0.05 nats more surprised: perplexity 5% higher
    ratio, low, high = perplexity_ratio(worse, reference)
    assert low > 1.0 and math.isclose(ratio, math.exp(0.05), rel_tol=0.02)
    with pytest.raises(ValueError, match="fewer than two blocks"):
        perplexity_ratio(reference[:40], reference[:40])


def test_perplexity_of_a_diverging_model_is_infinite_not_an_error(monkeypatch):
    import math

    import torch

    import helpers.quality

    monkeypatch.setattr(helpers.quality, "token_losses", lambda *args, **kwargs: torch.tensor([800.0, 900.0]))
    assert perplexity(None, None) == math.inf  # exp(850) overflows a float: inf, which lessons print and never record
