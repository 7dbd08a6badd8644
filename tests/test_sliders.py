import pytest

from coursetools import sliders
from coursetools.settings import STATIC
from coursetools.sliders import explore, widgets_render
from helpers.widgets import progress


def test_static_view_draws_once_at_the_start_values(capsys, monkeypatch):
    monkeypatch.setenv(STATIC, "1")
    seen = []
    explore(lambda seq, kind: seen.append((seq, kind)), seq=([1, 2, 4], 2), kind=(["a", "b"], "b"))
    assert seen == [(2, "b")]
    assert "static view at seq=2, kind=b" in capsys.readouterr().out


def test_no_widgets_outside_a_kernel(monkeypatch):
    monkeypatch.delenv(STATIC, raising=False)
    assert widgets_render() is False  # pytest is no Jupyter kernel


def test_a_start_value_outside_its_options_is_refused():
    with pytest.raises(ValueError, match="not among its options"):
        explore(lambda seq: None, seq=([1, 2], 3))


def test_live_view_builds_a_slider_and_a_menu_and_draws_at_the_start_values(monkeypatch):
    import ipywidgets

    monkeypatch.setattr(sliders, "widgets_render", lambda: True)  # as in a Jupyter kernel
    assert isinstance(sliders.control([1, 2, 4], 2), ipywidgets.SelectionSlider)
    assert isinstance(sliders.control(["a", "b"], "a"), ipywidgets.Dropdown)
    seen = []
    sliders.explore(lambda seq, kind: seen.append((seq, kind)), seq=([1, 2, 4], 4), kind=(["a", "b"], "a"))
    assert seen == [(4, "a")]


def test_progress_is_plain_in_a_stored_run(monkeypatch):
    items = [1, 2, 3]
    monkeypatch.setenv(STATIC, "1")
    assert progress(items, "steps") is items
    monkeypatch.delenv(STATIC)
    assert list(progress(items, "steps")) == items
