"""02_jailbreak with the `paper` profile's parameters on a small model (tests/paper_shaped/):
the original GCG prompt, the '*' initialisation, every step run (no early stop), candidates
with replacement and no filter, tests with the model's generation config."""

import json

import pandas as pd
import pytest
from support import shaped_overrides

pytestmark = pytest.mark.slow


def test_jailbreak_paper_shaped(paper_shaped):
    out = paper_shaped("02_jailbreak")
    shaped = shaped_overrides("02_jailbreak")
    attacks = pd.read_json(out / "attacks.jsonl", lines=True)
    assert attacks["goal_id"].tolist() == ["tutorial-c1"]  # the tutorial goals, as released
    for record in attacks.itertuples():
        settings = record.settings
        assert settings["suffix_init"] == "released" and settings["template"] == "llama2_paper"
        assert not (settings["early_stop"] or settings["dedup_candidates"])
        assert not settings["filter_ids"] and settings["test_generation"] == "model"
        assert (settings["batch_size"], settings["topk"]) == (300, 256)
        assert record.n_steps == shaped["num_steps"] and not record.early_stopped
        assert [t["step"] for t in record.tests] == [2, 3]
        assert all(t["prompt"].startswith("[INST] <<SYS>>") for t in record.tests)
        assert all(t["prompt"].endswith("[/INST]") for t in record.tests)
        # one token of the 20 '*' tokens is replaced in the first step
        assert record.suffixes[0].count("*") >= 19
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["num_steps"] == shaped["num_steps"]
    assert manifest["decoding"].keys() == {"do_sample", "temperature", "top_p", "top_k"}
