"""Figures sized for the report, on tables shaped like the smoke run's (and 07's paper grid):
at most MAX_WIDTH inches wide, tick labels apart, stamps inside their panels, error bars on
the 1-5 scale, panels titled with human labels."""

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from medsafe_utils.core.figures import (  # noqa: E402
    _PANELS,
    MAX_WIDTH,
    STAMP_SIZES,
    Panel,
    facets,
    figure_panels,
    mark_panels,
)
from medsafe_utils.finetune.effects import finetune_harmfulness  # noqa: E402
from medsafe_utils.finetune.figures import fig_before_after, fig_harm_vs_n  # noqa: E402
from medsafe_utils.generate.figures import fig_requests_per_principle  # noqa: E402
from medsafe_utils.jailbreak.figures import fig_gcg_loss  # noqa: E402
from medsafe_utils.judge.figures import (  # noqa: E402
    fig_harmfulness_by_category,
    fig_harmfulness_by_model,
    fig_score_distribution,
)
from medsafe_utils.judge.review import fig_expert_confusion  # noqa: E402
from medsafe_utils.judge.stats import harmfulness_table, with_eval_set  # noqa: E402
from medsafe_utils.medical_eval.figures import (  # noqa: E402
    fig_medical_before_after,
    fig_over_refusal,
)

JUDGES = ["hf:smollm2-135m-instruct:score_only", "keyword:refusal-prefix-baseline"]
MARK = (
    "DO NOT TRUST: judge fails validation\nSmolLM2-135M-Instruct judge (score only)\n"
    "false-harm rate 1.00 > 0.20\n(9 of 9 safe responses scored above 1)"
)


def _judged(types=(("none", 0),), model="smollm2-135m-instruct") -> pd.DataFrame:
    """05/06's judgments in the smoke run's shape: two judges, MedSafety-Eval by origin (9
    requests, categories 1-9) and AdvBench (6); the keyword judge's 1s and 5s."""
    rng = np.random.default_rng(0)
    rows = []
    for judge, (kind, n) in itertools.product(JUDGES, types):
        sets = [("medsafety_eval", "gpt4"), ("medsafety_eval", "llama2"), ("advbench", "advbench")]
        for harm_set, origin in sets:
            for i in range(9 if harm_set == "medsafety_eval" else 6):
                score = 4 if judge.startswith("hf") else int(rng.choice([1, 5], p=[0.2, 0.8]))
                rows.append(
                    dict(judge=judge, model=f"{model}+{kind}", base_model=model, type=kind, n=n)
                    | dict(aligned=True, harm_set=harm_set, origin=origin, score=score)
                    | dict(category=i + 1 if harm_set == "medsafety_eval" else 0)
                    | dict(item_id=f"{origin}-{i}", response_idx=len(rows))
                )
    judged = with_eval_set(pd.DataFrame(rows))
    return judged.assign(model=model) if types == (("none", 0),) else judged


def _accuracy(adapters: int) -> pd.DataFrame:
    """07's accuracy table: 2 protocols x 2 shot counts x 4 benchmarks, the base and adapters."""
    rows = []
    settings = itertools.product(["generation", "loglikelihood"], [0, 1], range(adapters + 1))
    for (protocol, shots, a), bench in itertools.product(
        settings, ["medmcqa", "medqa", "mmlu_medical", "pubmedqa"]
    ):
        adapter = f"smollm2__both_n{16 * a}" if a else ""
        rows.append(
            dict(protocol=protocol, num_fewshot=shots, benchmark=bench, adapter=adapter)
            | dict(model=f"smollm2-135m-instruct+{adapter}" if a else "smollm2-135m-instruct")
            | dict(base_model="smollm2-135m-instruct", adapter_type="both" if a else "")
            | dict(adapter_n=16 * a, accuracy=0.4, ci_low=0.1, ci_high=0.8, chance=0.25)
            | dict(chance_in_ci=True, ci_method="wilson" if shots == 0 else "t")
        )
    return pd.DataFrame(rows)


def _over_refusal() -> pd.DataFrame:
    base = dict(model="smollm2-135m-instruct", base_model="smollm2-135m-instruct", n=4)
    return pd.DataFrame(
        [
            base | dict(adapter="", adapter_type="", adapter_n=0, rate=0.0, p_value=np.nan),
            base | dict(adapter="a", adapter_type="both", adapter_n=16, rate=0.25, p_value=1.0),
        ]
    ).assign(ci_low=0.0, ci_high=0.49)


def _smoke_figures() -> dict:
    judged = _judged()
    tuned = finetune_harmfulness(_judged((("none", 0), ("med", 16), ("gen", 16), ("both", 16))))
    confusion = pd.DataFrame([dict(judge=j, expert_score=5, judge_score="4", n=12) for j in JUDGES])
    requests = pd.DataFrame({"category": range(1, 10), "method": "template"})
    gcg = pd.DataFrame(
        [
            dict(goal_id=f"{variant}-1", losses=[2.0, 1.5], best_losses=[2.0, 1.5])
            | dict(initial_loss=2.5, success=False, model="smollm2-135m-instruct")
            for variant in ("tutorial", "prompts")
        ]
    )
    return {
        "fig_requests_per_principle": lambda: fig_requests_per_principle(requests, [*range(1, 10)]),
        "fig_gcg_loss": lambda: fig_gcg_loss(gcg),
        "fig_harmfulness_by_model": lambda: fig_harmfulness_by_model(
            harmfulness_table(judged, ["judge", "model", "aligned", "eval_set"])
        ),
        "fig_score_distribution": lambda: fig_score_distribution(judged),
        "fig_harmfulness_by_category": lambda: fig_harmfulness_by_category(
            harmfulness_table(judged, ["judge", "harm_set", "model", "category"])
        ),
        "fig_expert_confusion": lambda: fig_expert_confusion(confusion),
        "fig_before_after": lambda: fig_before_after(tuned),
        "fig_harm_vs_n": lambda: fig_harm_vs_n(tuned),
        "fig_medical_before_after": lambda: fig_medical_before_after(_accuracy(1)),
        "fig_medical_before_after (paper grid)": lambda: fig_medical_before_after(_accuracy(4)),
        "fig_over_refusal": lambda: fig_over_refusal(_over_refusal()),
    }


def _overlaps(boxes, axis: int) -> list:
    """Pairs of neighbouring boxes (sorted along x for axis 0, y for 1) that overlap."""
    boxes = sorted(boxes, key=lambda b: b.extents[axis])
    return [(a, b) for a, b in itertools.pairwise(boxes) if a.extents[axis + 2] > b.extents[axis]]


@pytest.mark.parametrize("name", list(_smoke_figures()))
def test_figure_fits_the_report_and_its_tick_labels_stay_apart(name):
    fig = mark_panels(_smoke_figures()[name](), {JUDGES[0]: MARK})
    fig.canvas.draw()
    assert fig.get_size_inches()[0] <= MAX_WIDTH, fig.get_size_inches()
    assert fig.get_tightbbox().width <= MAX_WIDTH + 0.5  # with a legend above: still in reach
    for ax in fig.axes:
        for axis, ticks in ((0, ax.get_xticklabels()), (1, ax.get_yticklabels())):
            shown = [t.get_window_extent() for t in ticks if t.get_visible() and t.get_text()]
            assert not _overlaps(shown, axis), (name, [t.get_text() for t in ticks])
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert not any(i in titles for i in ("hf:", "keyword:", "advbench", "smollm2-135m")), titles
    plt.close(fig)


def test_error_bars_stay_on_the_scale():
    tuned = finetune_harmfulness(_judged((("none", 0), ("med", 16))))
    fig = fig_before_after(tuned)
    ends = [seg[:, 0] for ax in fig.axes for coll in ax.collections for seg in coll.get_segments()]
    assert ends and all(1 <= x <= 5 for seg in ends for x in seg)
    assert "95% interval (bootstrap)" in fig.axes[-1].get_xlabel()
    plt.close(fig)


# 05's AdvBench heatmap (one category + room for labels, at 0.6 inches), a bar panel; one model
@pytest.mark.parametrize("width", [4 * 0.6, 3.8])
def test_a_stamp_lies_inside_its_panel(width):
    table = pd.DataFrame({"judge": ["bad"], "eval_set": ["s"], "model": ["m"]})
    fig, panels = facets(table, "judge", "eval_set", width, 0.35 + 1.4)
    fig.tight_layout()
    mark_panels(fig, {"bad": MARK})
    fig.canvas.draw()  # the Agg canvas: the box is placed at drawing time
    (panel,) = figure_panels(fig)
    (stamp,) = panel.ax.texts
    room = panel.ax.get_window_extent()
    for box in (stamp.get_window_extent(), stamp.get_bbox_patch().get_window_extent()):
        assert room.x0 <= box.x0 and box.x1 <= room.x1, (width, box, room)
        assert room.y0 <= box.y0 and box.y1 <= room.y1, (width, box, room)
    assert "".join(stamp.get_text().split()) == "".join(MARK.split())  # wrapped, not cut
    plt.close(fig)


def test_a_stamp_too_big_for_any_size_is_drawn_at_the_smallest():
    fig, ax = plt.subplots(figsize=(0.6, 0.4))
    _PANELS[ax] = Panel(ax, pd.DataFrame({"judge": ["bad"]}), "bad", None, True, True, True, "")
    mark_panels(fig, {"bad": MARK})
    assert ax.texts[0].get_fontsize() == STAMP_SIZES[-1]
    plt.close(fig)


def test_facets_wrap_columns_past_the_width_cap():
    table = pd.DataFrame({"col": list("abcde"), "row": "r"})
    fig, panels = facets(table, "row", "col", 4.0, 2.0)
    assert fig.get_size_inches()[0] <= MAX_WIDTH
    assert [p.first_col for p in panels] == [True, False, False, True, False]
    # the x label goes where no panel is below: d and e, and c (the second line is shorter)
    assert [p.last_row for p in panels] == [False, False, True, True, True]
    plt.close(fig)
