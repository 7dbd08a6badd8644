import pytest

from helpers.widgets import STATIC_ENV, explore, widgets_render


def test_static_view_draws_once_at_the_start_values(capsys, monkeypatch):
    monkeypatch.setenv(STATIC_ENV, "1")
    seen = []
    explore(lambda seq, kind: seen.append((seq, kind)), seq=([1, 2, 4], 2), kind=(["a", "b"], "b"))
    assert seen == [(2, "b")]
    assert "static view at seq=2, kind=b" in capsys.readouterr().out


def test_no_widgets_outside_a_kernel(monkeypatch):
    monkeypatch.delenv(STATIC_ENV, raising=False)
    assert widgets_render() is False  # pytest is no Jupyter kernel


def test_a_start_value_outside_its_options_is_refused():
    with pytest.raises(ValueError, match="not among its options"):
        explore(lambda seq: None, seq=([1, 2], 3))
