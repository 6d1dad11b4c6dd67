"""The confusion-matrix and trimap figures: what they plot, and their errors."""

import numpy as np
import pytest

from sdnseg.viz.metric_figures import confusion_figure, figure_png, trimap_figure


def test_confusion_figure_shows_row_normalised_rates():
    fig = confusion_figure([[3, 1], [0, 0]], ["road", "pole"])
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(image), [[0.75, 0.25], [0.0, 0.0]])  # absent row empty
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["road", "pole"]
    assert figure_png(fig).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="does not fit 3 classes"):
        confusion_figure([[1, 0], [0, 1]], ["a", "b", "c"])


def test_trimap_figure_plots_percent_against_width():
    fig = trimap_figure({"base": {4: 0.5, 1: 0.25}, "+SDN": {1: 0.3, 4: 0.6}})
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["base", "+SDN"]
    np.testing.assert_allclose(lines[0].get_xydata(), [[1, 25], [4, 50]])
