"""`servopt fit --plot`: every curve drawn is what `PerformanceModels.predict` returns for the configuration, every
axis carries readable labels, and the units are right."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from servopt.performance.evaluate import fit_profile
from servopt.performance.features import TARGETS
from servopt.performance.plot import plot_report
from servopt.profiles import load_profile

#: the H200 ResNet-50 profile measured by servopt (torch, three input sizes, hw.* readings): every GPU target
R50 = "measured_H200_resnet50_fp16.csv"
#: NVIDIA's EfficientNet tables: panels whose latency spans less than a decade
EFFICIENTNET = "nvidia_efficientnet_pytorch.csv"


@pytest.fixture(scope="module")
def r50(root):
    table = load_profile(root / "profiles" / R50)
    return fit_profile(table.frame, source=table.source, targets=["latency", "warmup", "memory"])


@pytest.fixture(scope="module")
def efficientnet(root):
    table = load_profile(root / "profiles" / EFFICIENTNET)
    return fit_profile(table.frame, source=table.source, targets=["latency"])


def drawn(report, models, path, monkeypatch):
    """The figure :func:`plot_report` writes to ``path`` (taken as it closes it), drawn."""
    import matplotlib.pyplot as plt

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    assert plot_report(report, models, path) == path
    monkeypatch.setattr(plt, "close", close)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    fig.canvas.draw()
    return fig


def panels(fig, report):
    """(axes, configuration) of each panel, in order."""
    used = [ax for ax in fig.axes if ax.axison]
    assert len(used) == len(report.groups)
    return list(zip(used, report.groups))


def visible_labels(axis, lim):
    """The texts of the tick labels (major and minor) inside the axis limits, non-empty."""
    lo, hi = sorted(lim)
    eps = 1e-9 * (hi - lo)
    out = []
    for which in ("major", "minor"):
        ticks = axis.get_major_ticks() if which == "major" else axis.get_minor_ticks()
        for tick, loc in zip(ticks, axis.get_majorticklocs() if which == "major" else axis.get_minorticklocs()):
            text = tick.label1.get_text().strip().strip("$")
            if tick.label1.get_visible() and text and lo - eps <= loc <= hi + eps:
                out.append(text)
    return out


@pytest.mark.parametrize("target", ["latency", "warmup", "memory"])
def test_the_curve_is_what_predict_returns(r50, target, tmp_path, monkeypatch):
    models, reports = r50
    report = reports[target]
    fitted = models.targets[target]
    x = TARGETS[target].x
    fig = drawn(report, models, tmp_path / f"{target}.png", monkeypatch)
    for ax, group in panels(fig, report):
        (line,) = [ln for ln in ax.get_lines() if ln.get_label().endswith("(all points)")]
        xs, ys = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
        whole = xs == np.round(xs)  # the models take whole batches only: compare there, then ask for all
        # the query `servopt predict` takes for this configuration: its key (model, variant, hardware, input
        # size), the batch sizes, and for latency and memory the configuration's static hw.* features; the
        # warm-up's hw.* readings are left out (a query cannot know them: they take the profile's medians)
        query = pd.DataFrame({**group.key, x: xs[whole]})
        if TARGETS[target].hw == "static":
            query = query.assign(**{c: v for c, v in group.features.items() if c.startswith("hw.")})
        else:
            assert not any(c.startswith("hw.") for c in query.columns)
        expected = models.predict(query, targets=[target])[fitted.output].to_numpy()
        assert ys[whole] == pytest.approx(expected, rel=1e-12), group.label
        assert whole.all() and xs.min() == group.x.min() and xs.max() >= group.x.max()


def test_memory_is_labelled_in_mib(r50, tmp_path, monkeypatch):
    models, reports = r50
    fig = drawn(reports["memory"], models, tmp_path / "memory.png", monkeypatch)
    assert {ax.get_ylabel() for ax, _ in panels(fig, reports["memory"])} == {"memory (MiB)"}


@pytest.mark.parametrize("profile, target", [(EFFICIENTNET, "latency"), (R50, "latency"), (R50, "warmup"),
                                             (R50, "memory")])
def test_every_axis_labels_two_values_and_whole_batches(profile, target, efficientnet, r50, tmp_path, monkeypatch):
    models, reports = efficientnet if profile == EFFICIENTNET else r50
    report = reports[target]
    fig = drawn(report, models, tmp_path / "p.png", monkeypatch)
    for ax, group in panels(fig, report):
        y = visible_labels(ax.yaxis, ax.get_ylim())
        assert len(y) >= 2, f"{group.label}: y tick labels {y}, y range {ax.get_ylim()}"
        batch = visible_labels(ax.xaxis, ax.get_xlim())
        assert len(batch) >= 2 and all(re.fullmatch(r"\d+", b) for b in batch), f"{group.label}: x labels {batch}"


def test_a_panel_inside_one_decade_still_labels_two_values(efficientnet, tmp_path, monkeypatch):
    """The V100 EfficientNet-B0 AMP panel spans 16-60 ms: no power of ten inside it."""
    models, reports = efficientnet
    fig = drawn(reports["latency"], models, tmp_path / "eff.png", monkeypatch)
    ((ax, _),) = [(ax, g) for ax, g in panels(fig, reports["latency"])
                  if g.label.startswith("efficientnet-b0-amp V100")]
    lo, hi = ax.get_ylim()
    assert np.floor(np.log10(lo)) == np.floor(np.log10(hi))  # the case: one decade
    labels = visible_labels(ax.yaxis, (lo, hi))
    assert len(labels) >= 2 and all(lo <= float(v) <= hi for v in labels)
