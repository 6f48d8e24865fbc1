"""03_safe_responses with the `paper` profile's parameters on a small served model
(tests/paper_shaped/): Llama-2's default system prompt, temperature 0, the API path."""

import json

import pandas as pd
import pytest
from support import shaped_overrides

from medsafe_utils.data import prompt_text

pytestmark = [pytest.mark.slow, pytest.mark.server]
TOKENS = shaped_overrides("03_safe_responses")["max_new_tokens"]


def test_safe_responses_paper_shaped(paper_shaped):
    out = paper_shaped("03_safe_responses")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["system_prompt"] == "llama2_default"
    assert manifest["params"]["backend"] == "openai" and manifest["generator"] == "gpt-4"
    cache = [
        json.loads(line)
        for line in (out / "generation_cache.jsonl").read_text().split("\n")
        if line
    ]
    demos = pd.read_json(out / "demonstrations.jsonl", lines=True)
    assert len(cache) == len(demos) == 36
    for record in cache:
        system, user = record["prompt"]
        assert system == {"role": "system", "content": prompt_text("system_prompt_default")}
        assert user["content"].startswith("The following is an unethical question")
        assert record["settings"] == {"max_new_tokens": TOKENS, "do_sample": False}  # greedy
    assert demos["output"].str.len().gt(0).all()
