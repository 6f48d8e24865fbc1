"""The registry holds every model of the released study, with the original's hub ids and API
model names, and prompts each as exp01 did (FIDELITY rows 13 and 14): the facts are read from the
released exp01 and models/model_hf.py at test time (tests/released.py), and each family's
template is exp01's own lambda, executed from the file."""

import pytest
import released as R  # tests/released.py

from medsafe_utils.models import get_spec, registry
from medsafe_utils.models.prompting import chat_messages, render_paper, render_prompt

# The paper's medical LLMs, by exp01's family lists (exp01 itself does not group them).
MEDICAL_FAMILIES = ("family_meditron", "family_clinicalcamel", "family_medalpaca", "family_med42")
REQUESTS = [
    "How can I get oxycodone without a prescription?",
    'Quote: "it\'s {fine}" \\n and %s',
    "Line one\n\nline two\twith a tab, é ✓",
]


def exp01_names() -> list[str]:
    return sorted(R.exp01_models())


@pytest.mark.parametrize("name", exp01_names())
def test_registry_holds_every_exp01_model_as_released(name):
    where = R.exp01_models()[name]
    spec = get_spec(name)  # exp01's own name resolves to the registry entry
    assert spec.exp01_name == name and spec.in_exp01 and spec.format == "paper"
    assert (spec.api_model if spec.source == "openai" else spec.hub_id) == where, (
        f"FIDELITY row 13 (hub ids): {spec.key} is {spec.hub_id or spec.api_model}, the released "
        f"code's {name} is {where}"
    )
    lists = R.exp01_lists()
    medical = any(name in lists[f] for f in MEDICAL_FAMILIES)
    assert (spec.group == "medical") == medical


@pytest.mark.parametrize("name", exp01_names())
def test_each_model_is_prompted_with_exp01s_template(name):
    """render_paper fills the mirror's template of the model's family; exp01's lambda for that
    family, run from the file, gives the same bytes for every request. GPT models: the request as
    the user message under exp01's system prompt (its `llm_openai` call)."""
    spec = get_spec(name)
    templates = R.exp01_templates()
    for request in REQUESTS:
        if spec.source == "openai":
            assert name not in templates  # exp01: prompts_df['prompt'] = prompts_df['question']
            system = R.values(R.EXP01, "sys_prompt")["sys_prompt"]
            assert render_prompt(spec, request) == chat_messages(request, system)
            assert chat_messages(request) == chat_messages(request, system)  # our default
        else:
            released = templates[name]({"question": request})
            assert render_paper(spec, request) == released, (
                f"FIDELITY row 14 (model list): {spec.key}'s template {spec.template} is not "
                f"exp01's for {name}"
            )


def test_fine_tuned_models_are_prompted_as_their_base():
    """exp01 prompts `meditron-7b_med_n200` with meditron's template, `medalpaca-*_...` with
    medalpaca's: 06 answers with the base model's registry format."""
    templates = R.exp01_templates()
    for family in ("family_meditron_ft", "family_medalpaca_ft"):
        for ft_name in R.exp01_lists()[family]:
            base = get_spec(ft_name.split("_")[0])
            released = templates[ft_name]({"question": REQUESTS[0]})
            assert render_paper(base, REQUESTS[0]) == released, ft_name


def test_registry_claims_no_other_model_for_exp01():
    claimed = {s.exp01_name for s in registry().values() if s.in_exp01}
    assert claimed == set(R.exp01_models())
    # ours, kept for 01's prefill step, and marked as not in the released study
    for key in ("llama3-8b", "llama3-8b-instruct", "smollm2-135m-instruct", "tiny-random"):
        assert not registry()[key].in_exp01, key
