import hashlib

from helpers.quality import evaluation_text, greedy_answers, perplexity

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
    first = greedy_answers(model, tokenizer, ("Name three primary colors.",), max_new_tokens=8)
    assert first == greedy_answers(model, tokenizer, ("Name three primary colors.",), max_new_tokens=8)
