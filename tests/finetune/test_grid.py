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
