import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from coursetools.checks import exercise
from coursetools.checks.lesson02 import (
    agreement_problem,
    check_call,
    compare_peak,
    expected_score_dtype,
    math_peak_problem,
    priority_problem,
    score_dtype_problem,
)

FLASH, CUDNN, EFFICIENT = SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION
MiB = 2**20


def test_the_right_call_passes_and_leaves_the_backends_as_they_were():
    before = (torch.backends.cuda.math_sdp_enabled(), torch.backends.cuda.cudnn_sdp_enabled())
    assert check_call(sdpa_kernel([FLASH, CUDNN], set_priority=True)) is None
    assert check_call(sdpa_kernel([FLASH, CUDNN], True)) is None
    assert (torch.backends.cuda.math_sdp_enabled(), torch.backends.cuda.cudnn_sdp_enabled()) == before


def test_a_used_context_manager_asks_for_a_fresh_one():
    answer = sdpa_kernel([FLASH, CUDNN], set_priority=True)
    assert check_call(answer) is None
    assert "used already" in check_call(answer)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ([FLASH, CUDNN], "write the call itself"),
        (sdpa_kernel([FLASH, CUDNN]), "set_priority=True"),
        (sdpa_kernel([CUDNN, FLASH], set_priority=True), "put flash first"),
        (sdpa_kernel([FLASH, EFFICIENT], set_priority=True), "allow exactly"),
        (sdpa_kernel([FLASH], set_priority=True), "allow exactly"),
        (sdpa_kernel("flash"), "refused the arguments"),
        ("flash", "write a call of torch.nn.attention.sdpa_kernel"),
    ],
)
def test_typical_mistakes_get_their_hint(answer, hint):
    assert hint in check_call(answer)


def test_the_deprecated_spelling_is_named():
    with pytest.warns(FutureWarning):
        old = torch.backends.cuda.sdp_kernel(enable_math=False, enable_mem_efficient=False)
    assert "deprecated" in check_call(old)


def test_prediction_agrees_contradicts_and_ties():
    scores = 100 * MiB
    agrees, sentence = compare_peak(True, peak_bytes=466 * MiB, scores_bytes=scores, stored_scores_bytes=2 * scores)
    assert agrees and "4.66x" in sentence and "float32" in sentence
    agrees, sentence = compare_peak(False, peak_bytes=466 * MiB, scores_bytes=scores, stored_scores_bytes=2 * scores)
    assert not agrees and "more than 2x" in sentence
    agrees, sentence = compare_peak(True, peak_bytes=150 * MiB, scores_bytes=scores, stored_scores_bytes=scores)
    assert not agrees and "less than 2x" in sentence and "float32" not in sentence
    assert compare_peak(False, peak_bytes=203 * MiB, scores_bytes=scores, stored_scores_bytes=scores)[0]  # a tie
    unsettled = compare_peak(True, peak_bytes=None, scores_bytes=scores, stored_scores_bytes=scores)
    assert unsettled[0] is None and "did not run" in unsettled[1]  # neither right nor wrong: nothing settles it


def test_exercises_are_registered_with_their_kinds():
    assert exercise("02-predict").choices == (True, False)
    assert exercise("02-call").check is check_call


def test_the_score_dtype_rule_follows_the_switch():
    assert expected_score_dtype(torch.float16, half_reduction=False) == torch.float32
    assert expected_score_dtype(torch.bfloat16, half_reduction=True) == torch.bfloat16
    assert expected_score_dtype(torch.float32, half_reduction=False) == torch.float32


def test_a_score_dtype_against_the_rule_is_a_problem():
    right = {(torch.float16, False): torch.float32, (torch.float16, True): torch.float16}
    assert score_dtype_problem(right) is None
    problem = score_dtype_problem({(torch.float16, False): torch.float16, (torch.float16, True): torch.float16})
    assert "torch.float16 inputs, half reduction not allowed: softmax in torch.float16" in problem
    assert ";" not in problem  # only the wrong probe is named
    assert "the rule says torch.float16" in score_dtype_problem({(torch.float16, True): torch.float32})


def test_a_math_peak_below_scores_and_weights_is_a_problem():
    scores = 2 * 4 * 256 * 256 * 4  # batch 2, heads 4, seq 256, float32 scores
    assert math_peak_problem({256: 2 * scores}, batch=2, heads=4, score_element=4) is None
    assert "seq 256" in math_peak_problem({256: 2 * scores - 1}, batch=2, heads=4, score_element=4)
    assert math_peak_problem({256: scores}, batch=2, heads=4, score_element=2) is None  # the same bytes as half scores


def test_attention_from_scratch_beyond_the_tolerance_is_a_problem():
    assert agreement_problem(4.8e-7) is None
    assert "2.0e-03" in agreement_problem(2e-3)


def test_a_kernel_against_the_priority_rule_is_a_problem():
    order, listed = ["cudnn", "flash", "efficient", "math"], ["efficient", "flash"]
    everywhere = ["math", "efficient", "flash", "cudnn"]
    assert priority_problem({False: "flash", True: "efficient"}, order, listed, everywhere) is None
    assert priority_problem({False: "flash", True: "flash"}, order, listed, ["math", "flash"]) is None  # a CPU
    assert "set_priority=True: SDPA ran flash" in priority_problem({False: "flash", True: "flash"}, order, listed, everywhere)
    assert "set_priority=False" in priority_problem({False: "efficient", True: "efficient"}, order, listed, everywhere)


def test_the_right_call_passes_under_t4_emulation_and_the_t4_switches_stay_off():
    from coursetools.profiles import PROFILES, allow_sdpa_backends
    from helpers.attention import allowed_backends

    before = allowed_backends()
    try:
        allow_sdpa_backends(PROFILES["t4"].sdpa_backends)  # as on Colab's T4: flash and cuDNN wrapped to stay off
        assert check_call(sdpa_kernel([FLASH, CUDNN], set_priority=True)) is None
        assert "set_priority=True" in check_call(sdpa_kernel([FLASH, CUDNN]))
        assert "allow exactly" in check_call(sdpa_kernel([FLASH], set_priority=True))
        assert sorted(allowed_backends()) == ["efficient", "math"]
        torch.backends.cuda.enable_flash_sdp(True)
        assert not torch.backends.cuda.flash_sdp_enabled()  # the emulation's wrappers are back after the check
    finally:
        allow_sdpa_backends(("math", "efficient", "flash", "cudnn"))
    assert set(before) <= set(allowed_backends())
