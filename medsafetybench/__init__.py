"""Inspect's namespace for this project (the `inspect_ai` entry point in pyproject.toml).

    inspect eval medsafetybench/medsafetybench --model <provider/model> \\
        --model-role grader=<provider/model> -T per_group=5

The task itself lives in medsafe_utils.inspect_task."""
