import pytest
import torch

from coursetools.exercises import STRICT_ENV, ExerciseError, check, is_right
from helpers.models import empty_model


def test_unanswered_exercise_prints_where_the_solution_is(capsys, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert check("02", ..., batch=1, heads=2, element=4) is None  # a cell ending in check shows no value
    assert is_right("02", ..., batch=1, heads=2, element=4) is False
    assert "workshop/solutions/02.py" in capsys.readouterr().out


@pytest.mark.parametrize("grade", [check, is_right])
def test_an_unknown_exercise_id_lists_the_ids_even_unanswered(grade, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert grade("02-predict", ..., faster=True) in (None, False)
    for unknown in ("02-guess", "42"):
        with pytest.raises(ValueError, match=r"no exercise .*; choose one of \['00', '00-call', '00-predict', '01', "):
            grade(unknown, ...)


def test_strict_mode_raises_on_a_wrong_answer(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ExerciseError, match="not yet"):
        check("02", 123, batch=1, heads=2, element=4)


@pytest.mark.parametrize(
    ("lesson", "right", "wrong", "context"),
    [
        ("00", 1e12 / 433, 1e12 / 250, {"nf4_footprint": 433, "bandwidth": 1e12, "footprint": 1000, "bits": 16}),
        ("01", 1 - (4 + 16) / (2 * 16), 1 - 6 / 8, {"lengths": [2, 4], "padded_to": 4}),
        ("02", 1 * 2 * 65536 * 65536 * 4, 1 * 2 * 65536 * 4, {"batch": 1, "heads": 2, "element": 4}),
        ("03", 10, 11, {}),
    ],
)
def test_checks_accept_the_right_answer_and_reject_a_wrong_one(lesson, right, wrong, context, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert is_right(lesson, right, **context)
    assert not is_right(lesson, wrong, **context)


def test_outlier_count_check_uses_the_threshold_of_three(monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    x = torch.zeros(4, 5)
    x[0, 1], x[2, 3], x[1, 4] = 3.5, -7.0, 2.9
    assert is_right("04", 2, x=x)
    assert not is_right("04", 1, x=x)


def test_combination_check_adds_weights_and_prefill_peak(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.delenv(STRICT_ENV, raising=False)
    ran = {
        ("bf16", "eager"): SimpleNamespace(footprint_bytes=100, peak_bytes={8: 50}),
        ("nf4", "eager"): SimpleNamespace(footprint_bytes=30, peak_bytes={8: 200}),
        ("nf4", "flash"): SimpleNamespace(footprint_bytes=30, peak_bytes={8: 10}),
    }
    assert is_right("05", ("nf4", "flash"), ran=ran, long=8)
    assert not is_right("05", ("nf4", "eager"), ran=ran, long=8)


def test_budget_check_finds_the_smallest_gpu0_budget(monkeypatch):
    from helpers.placement import plan

    monkeypatch.delenv(STRICT_ENV, raising=False)
    model = empty_model("llama3-8b-shape")  # ~15 GiB in bf16: GPU 1 at 80 GiB holds it all
    assert set(plan(model, {0: "1GiB", 1: "80GiB"}).values()) <= {0, 1}
    assert is_right("06", 1, model=model)
    assert not is_right("06", 2, model=model)


def test_a_prediction_is_compared_not_graded_and_only_its_form_fails_a_strict_run(monkeypatch, capsys):
    import coursetools.exercises
    from coursetools.checks import Prediction

    def compare(answer, faster):
        if faster is None:
            return None, "not measured here"
        return answer == faster, f"measured {'faster' if faster else 'slower'}"

    monkeypatch.setenv(STRICT_ENV, "1")
    monkeypatch.setattr(coursetools.exercises, "exercise", lambda _: Prediction("is it faster?", compare))
    check("99-predict", True, faster=True)
    check("99-predict", True, faster=False)  # contradicted: said, not raised
    assert is_right("99-predict", True, faster=True)
    assert not is_right("99-predict", True, faster=False)
    check("99-predict", True, faster=None)  # unsettled: said, neither counted right nor raised
    assert not is_right("99-predict", True, faster=None)
    out = capsys.readouterr().out
    assert "the measurement agrees: measured faster" in out and "says otherwise: measured slower" in out
    assert "nothing here settles it: not measured here" in out
    with pytest.raises(ExerciseError, match="one of True, False"):
        check("99-predict", "yes", faster=True)
    with pytest.raises(ExerciseError, match="not answered"):
        check("99-predict", ..., faster=True)


def test_exercise_ids_come_from_the_later_check_call_of_the_same_name():
    from coursetools.exercises import exercise_ids

    cells = ["x = 1", "guess = ...  # predict", "measure()", 'check("03-predict", guess, a=1)', "call = ...",
             'check("03-call", call)', 'check("03", other)']
    assert exercise_ids(cells) == {1: "03-predict", 4: "03-call"}
