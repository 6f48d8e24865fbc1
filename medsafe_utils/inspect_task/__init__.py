"""MedSafetyBench as an Inspect task (needs the `inspect` extra: pip install -e .[inspect]).

    inspect eval medsafetybench/medsafetybench --model openai/gpt-4o-mini \\
        --model-role grader=openai/gpt-3.5-turbo-0125 -T per_group=5
    python -m medsafe_utils.inspect_task import-log logs/<the log>.eval --profile paper \\
        --model gpt-4o-mini-inspect --aligned

Modules: dataset (samples from the data layer), scorers (the study's judge, the keyword
baseline), metrics (05's mean ± SE and unscored counts, grouped), task (the task), log_import
(an Inspect log as 04's responses)."""

import importlib.util

if importlib.util.find_spec("inspect_ai") is None:
    raise ImportError(
        "medsafe_utils.inspect_task needs inspect_ai: pip install -e '.[inspect]' "
        "(see README, 'Run it in Inspect')"
    )
