import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from helpers.plots import histogram  # noqa: E402


def test_histogram_counts_every_value_in_its_bins(monkeypatch):
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    histogram([1, 2, 2, 3, 9, 64], "real tokens per sentence", "tokens", bins=4)
    bars = shown[0].axes[0].patches
    assert len(bars) == 4 and sum(bar.get_height() for bar in bars) == 6
    plt.close(shown[0])


def test_interval_bars_labels_values_as_tables_do_not_in_exponent_form(monkeypatch):
    from helpers.plots import interval_bars

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    interval_bars({"loop": (1350.0, 1300.0, 1400.0)}, "decode", "tok/s", lines={"bound": 2230.0})
    labels = shown[0].axes[0].get_legend_handles_labels()[1]
    assert "bound: 2230" in labels and not any("e+" in label for label in labels)
    plt.close(shown[0])
