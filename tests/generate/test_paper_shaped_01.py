"""01_generate with the `paper` profile's parameters on small models (tests/paper_shaped/): the
released Llama-3 prefill string over both goal files, the model's own generation config, the
parse-based harm filter (100 tokens, first number, >= 7), GPT-4's API path."""

import json

import pandas as pd
import pytest

from medsafe_utils.core import paths
from medsafe_utils.data import load_adv_ama, prompt_text
from medsafe_utils.generate.harm_filter import ANSWER_PREFILL, first_number
from medsafe_utils.generate.llama3_prompt import released_llama3_prompt
from medsafe_utils.pipeline.execute import profile_params

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_generate_paper_shaped(paper_shaped):
    out = paper_shaped("01_generate")
    paper = profile_params("paper", paths.NOTEBOOKS_DIR / "01_generate.ipynb")
    manifest = json.loads((out / "manifest.json").read_text())
    params = manifest["params"]
    for name in ("prefill_prompt", "prefill_generation", "filter_method", "filter_prompt"):
        assert params[name] == paper[name]
    assert params["filter_max_new_tokens"] == 100 and params["harm_threshold"] == 7.0
    assert params["backend"] == "openai" and params["prefill_backend"] == "hf"

    generations = pd.read_json(out / "generations.jsonl", lines=True)
    prefill = generations[generations["method"] == "prefill"]
    assert sorted(prefill["variant"]) == ["prompts", "tutorial"]  # both goal files
    system = prompt_text("request_generation_system_prompt")
    for row in prefill.itertuples():
        goal = load_adv_ama(row.variant).set_index("category")["goal"][row.category]
        assert row.prompt == released_llama3_prompt(system, goal, "Sure!")
        assert row.generation.startswith("Sure!")
    prompting = generations[generations["method"] == "prompting"]
    assert len(prompting) == 2 and (prompting["generator"] == "gpt-4").all()  # through the API
    assert manifest["decoding"]["prefill"].keys() >= {"do_sample", "temperature", "top_p"}

    cache = [
        json.loads(line)
        for line in (out / "generation_cache.jsonl").read_text().split("\n")
        if line
    ]
    prefill_settings = [r["settings"] for r in cache if r["model"] == "smollm2-135m-instruct"]
    assert prefill_settings and all(s["generation"] == "model" for s in prefill_settings)

    rated = pd.read_json(out / "rated.jsonl", lines=True)
    assert len(rated) > 0 and rated["harm_mass"].isna().all()  # parsed, not probabilities
    for row in rated.itertuples():
        number = first_number(row.harm_raw)
        assert (row.harm_rating if row.harm_scored else None) == number
        assert row.harm_kept == (number is not None and number >= 7.0)
    harm_cache = [
        json.loads(line) for line in (out / "harm_cache.jsonl").read_text().split("\n") if line
    ]
    assert all(
        r["settings"] == {"max_new_tokens": 100, "generation": "model", "seed": 0}
        for r in harm_cache
    )
    assert all(r["prompt"].startswith(prompt_text("harm_filter_template")) for r in harm_cache)
    assert all(r["prompt"].endswith("<|end_header_id|>\n\n" + ANSWER_PREFILL) for r in harm_cache)
    requests = pd.read_json(out / "requests.jsonl", lines=True)
    assert requests["harm_rating"].ge(7.0).all()
