"""01's figure: requests kept per principle and method."""

import pandas as pd

from medsafe_utils.generate.figures import fig_requests_per_principle


def test_requests_per_principle_bars():
    requests = pd.DataFrame(
        {
            "category": [1, 1, 1, 3, 3],
            "method": ["direct", "direct", "roleplay", "direct", "roleplay"],
        }
    )
    fig = fig_requests_per_principle(requests, principles=[1, 2, 3])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]  # every principle
    heights = sorted(bar.get_height() for bar in ax.patches if bar.get_height() > 0)
    assert heights == [1, 1, 1, 2]  # direct: 2 and 1, roleplay: 1 and 1
    assert ax.get_xlabel() == "AMA principle" and ax.get_ylabel() == "requests kept"
