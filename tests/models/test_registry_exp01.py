"""The registry holds every model of the released study, with the original's hub ids and API
model names (FIDELITY rows 13 and 14)."""

import pytest
from released_code import EXP01_MODELS, MEDICAL  # tests/released_code.py

from medsafe_utils.models import get_spec, registry


@pytest.mark.parametrize("name", sorted(EXP01_MODELS))
def test_registry_holds_every_exp01_model_as_released(name):
    where, template = EXP01_MODELS[name]
    spec = get_spec(name)  # exp01's own name resolves to the registry entry
    assert spec.exp01_name == name and spec.in_exp01
    assert (spec.api_model if spec.source == "openai" else spec.hub_id) == where, (
        f"FIDELITY row 13 (hub ids): {spec.key} is {spec.hub_id or spec.api_model}, the released "
        f"code's {name} is {where}"
    )
    assert (spec.template, spec.format) == (template, "paper")
    assert (spec.group == "medical") == any(name.startswith(f) for f in MEDICAL)


def test_registry_claims_no_other_model_for_exp01():
    claimed = {s.exp01_name for s in registry().values() if s.in_exp01}
    assert claimed == set(EXP01_MODELS)
    # ours, kept for 01's prefill step, and marked as not in the released study
    for key in ("llama3-8b", "llama3-8b-instruct", "smollm2-135m-instruct", "tiny-random"):
        assert not registry()[key].in_exp01, key
