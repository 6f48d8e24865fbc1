"""06's grid: the released adapters by default, the denser grid of every published split as an
option, and the released sampling order (FIDELITY rows 7 and 8)."""

import released as R  # tests/released.py
import torch

from medsafe_utils.finetune.alpaca import demonstration_split
from medsafe_utils.finetune.grid import DENSE_N, DENSE_N_BOTH, finetune_grid, grid_sizes
from medsafe_utils.finetune.qlora import QLoRAConfig, _training_args


def test_released_grid_and_the_dense_option():
    FT_N, FT_N_BOTH = R.exp01_ft_n("med"), R.exp01_ft_n("both")  # noqa: N806 - exp01's lists
    assert R.exp01_ft_n("gen") == FT_N
    sizes = grid_sizes(FT_N, FT_N_BOTH)
    runs = finetune_grid(["medalpaca-7b"], ["med", "gen", "both"], *sizes)
    assert [r.name for r in runs][-2:] == ["medalpaca-7b__both_n1600", "medalpaca-7b__both_n1800"]
    assert len(runs) == 5 + 5 + 9  # exp01's ft_models_med, _gen, _both
    dense = grid_sizes(FT_N, FT_N_BOTH, dense=True)
    assert (
        dense == (DENSE_N, DENSE_N_BOTH)
        and len(finetune_grid(["m"], ["med", "both"], *dense)) == 27
    )
    assert set(FT_N) <= set(DENSE_N) and set(FT_N_BOTH) <= set(DENSE_N_BOTH)  # a superset
    # every size of the dense grid is a published split of that many demonstrations
    for kind, ns in (("med", DENSE_N), ("gen", DENSE_N), ("both", DENSE_N_BOTH)):
        for n in ns:
            assert len(demonstration_split(kind, n)) == n, (kind, n)


def test_micro_batches_in_random_order_as_released(tmp_path):
    assert QLoRAConfig().group_by_length is False
    args = _training_args(QLoRAConfig(), tmp_path, "cpu", torch.float32)
    assert args.train_sampling_strategy == "random" and not args.fp16 and not args.bf16
    grouped = _training_args(QLoRAConfig(group_by_length=True), tmp_path, "cpu", torch.float32)
    assert grouped.train_sampling_strategy == "group_by_length"


def test_a_rerun_reads_each_adapters_check_back(tmp_path, monkeypatch):
    """train_grid checks each new adapter on a loaded model; a rerun reads that check back
    (grid.CHECK_FILE) and loads nothing, unless the probes (or weights, or precision) differ."""
    from medsafe_utils.finetune import grid
    from medsafe_utils.models import load_model

    runs = grid.finetune_grid(["tiny-random"], ["med"], [4])
    steps = dict(batch_size=4, micro_batch_size=4, num_epochs=1, warmup_steps=0, cutoff_len=48)
    config = QLoRAConfig(**steps, load_in_4bit=False, gradient_checkpointing=False, eval_n=0)
    checked = ["max_abs_logit_diff", "top1_changed"]
    first = grid.train_grid(runs, config, tmp_path, split_n=100, n_verify=2, verify_dtype="float32")
    loads = []
    monkeypatch.setattr(grid, "load_model", lambda *a, **k: loads.append(a) or load_model(*a, **k))
    again = grid.train_grid(runs, config, tmp_path, split_n=100, n_verify=2, verify_dtype="float32")
    assert again["reused"].all() and loads == []
    assert again[checked].equals(first[checked]) and (first["max_abs_logit_diff"] > 0).all()
    other = grid.train_grid(runs, config, tmp_path, split_n=100, n_verify=3, verify_dtype="float32")
    assert loads == [("tiny-random",)] and not other[checked].equals(first[checked])
    (tmp_path / "adapters" / runs[0].name / grid.CHECK_FILE).write_text('{"asked": ')  # cut off
    again = grid.train_grid(runs, config, tmp_path, split_n=100, n_verify=3, verify_dtype="float32")
    assert len(loads) == 2 and again[checked].equals(other[checked]), "checked again"
