"""Lesson 07's exercise checks: generate's static-cache keywords, and the own-loop-against-generate prediction."""

import pytest
from transformers import CompileConfig

from coursetools.checks.lesson07 import EXERCISES, check_call, compare_speedup
from coursetools.exercises import STRICT_ENV, ExerciseError, check, is_right

NEW_TOKENS, CACHE_LEN = 16, 4096


def right(**changes: object) -> dict:
    """Return the right generate keywords, with some changed (a value of None removes the keyword)."""
    keywords = dict(max_new_tokens=NEW_TOKENS, do_sample=False, cache_implementation="static", max_cache_len=CACHE_LEN,
                    compile_config=CompileConfig(mode="reduce-overhead"))
    keywords.update(changes)
    return {key: value for key, value in keywords.items() if value is not None}


def test_the_right_keywords_pass_and_decode_with_a_static_cache(monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert check_call(right(), NEW_TOKENS, CACHE_LEN) is None
    assert check_call(right(compile_config=None, do_sample=None), NEW_TOKENS, CACHE_LEN) is None
    check("07-call", right(), new_tokens=NEW_TOKENS, cache_len=CACHE_LEN)
    assert is_right("07-call", right(), new_tokens=NEW_TOKENS, cache_len=CACHE_LEN)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ("static", "write a dict"),
        (right(cache_implementation=None, past_key_values=object()), "hands generate a cache you made"),
        (right(cache_implementation=None), "default DynamicCache"),
        (right(cache_implementation="Static"), "lower-case"),
        (right(cache_implementation="offloaded_static"), "on the CPU"),
        (right(cache_implementation="dynamic"), "is 'static'"),
        (right(max_cache_len=None), "set max_cache_len=4096"),
        (right(max_cache_len=2048), "size the cache once for 4096"),
        (right(max_new_tokens=None, max_length=NEW_TOKENS), "counts the prompt"),
        (right(max_new_tokens=8), "decode new_tokens = 16"),
        (right(do_sample=True), "do_sample=False"),
        (right(disable_compile=True), "switches off generate's own compilation"),
        (right(compile_config={"mode": "reduce-overhead"}), "CompileConfig(...), not a dict"),
        (right(compile_config=CompileConfig(mode="max-autotune-no-cudagraphs")), "no CUDA graphs"),
        (right(torch_compile=True), "generate refused these keywords: The following `model_kwargs` are not used"),
        (right(use_cache=False), "not a StaticCache"),
        (right(max_time=1e-9), "decoded 1 new tokens, not 16"),
    ],
)
def test_each_typical_mistake_gets_its_hint(answer, hint):
    problem = check_call(answer, NEW_TOKENS, CACHE_LEN)
    assert problem is not None and hint in problem


def test_a_wrong_call_fails_a_strict_run(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ExerciseError, match="max_cache_len"):
        check("07-call", right(max_cache_len=None), new_tokens=NEW_TOKENS, cache_len=CACHE_LEN)


def test_a_prediction_agreeing_and_one_contradicted():
    agrees, sentence = compare_speedup(True, (2.6, 2.5, 2.7), compiled=True, model="llama3-8b-shape")
    assert agrees and "2.60x faster" in sentence and "more than 2x" in sentence
    agrees, sentence = compare_speedup(True, (1.05, 0.98, 1.1), compiled=False, model="smollm2-135m")
    assert not agrees and "uncompiled here" in sentence and "only generate's bookkeeping" in sentence
    agrees, sentence = compare_speedup(False, (1.5, 1.4, 1.6), compiled=True, model="llama3-8b-shape")
    assert agrees and "do not halve generate's step" in sentence


def test_rounds_on_both_sides_of_twice_are_a_tie_either_answer_stands():
    for answer in (True, False):
        agrees, sentence = compare_speedup(answer, (2.05, 1.9, 2.2), compiled=True, model="llama-1b-shape")
        assert agrees and "a tie" in sentence


def test_a_contradicted_prediction_does_not_fail_a_strict_run_but_a_wrong_form_does(monkeypatch, capsys):
    monkeypatch.setenv(STRICT_ENV, "1")
    measured = dict(ratio=(1.05, 0.98, 1.1), compiled=False, model="smollm2-135m")
    check("07-predict", True, **measured)
    assert not is_right("07-predict", True, **measured)
    assert "the measurement says otherwise" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="True, False"):
        check("07-predict", 2.5, **measured)
    assert EXERCISES["07-predict"].choices == (True, False)


def test_cache_size_problem_fails_on_a_wrong_size():
    mib = 2**20
    from coursetools.checks.lesson07 import cache_size_problem

    assert cache_size_problem(64 * mib, 64 * mib, None) is None
    assert cache_size_problem(64 * mib, 64 * mib, 64 * mib + 4096) is None  # the allocator's rounding
    assert "tensors hold" in cache_size_problem(64 * mib, 32 * mib, None)
    assert "GPU memory" in cache_size_problem(64 * mib, 64 * mib, 128 * mib)  # a second copy kept somewhere
    assert "GPU memory" in cache_size_problem(64 * mib, 64 * mib, 0)  # nothing allocated: not the cache measured
