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
