import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from coursetools.checks import exercise
from coursetools.checks.lesson02 import check_call, compare_peak

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
    assert "did not run" in compare_peak(True, peak_bytes=None, scores_bytes=scores, stored_scores_bytes=scores)[1]


def test_exercises_are_registered_with_their_kinds():
    assert exercise("02-predict").choices == (True, False)
    assert exercise("02-call").check is check_call
