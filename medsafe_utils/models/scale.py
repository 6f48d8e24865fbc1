"""Which models a CPU can run, by the registry's `params_b`: the guard that stops a paper-scale
notebook on a machine without a GPU, and the caveat that a run of CPU-sized models carries.

    stop_if_too_big_for_cpu(["llama2-7b-chat"], step="02_jailbreak")   # raises on a CPU
    small_run_caveat("smoke", ["smollm2-135m-instruct"])                # "This run proves ..."
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from medsafe_utils.models.loading import default_device
from medsafe_utils.models.registry import get_spec

log = logging.getLogger(__name__)

# float32 on a CPU holds 4 bytes a parameter: 2 B parameters are 8 GB and a few tokens a second;
# the paper's 7-70 B models need a GPU. At or below this a model is "CPU-sized".
CPU_MAX_PARAMS_B = 2.0
ALLOW_ENV = "MEDSAFE_ALLOW_CPU"  # set to 1 to run models above CPU_MAX_PARAMS_B on a CPU anyway
NO_MODEL_BACKENDS = ("openai", "keyword")  # an API endpoint, or no model at all


class TooBigForCPU(RuntimeError):
    """A notebook would run models too big for this machine, which has no GPU."""


def local_sizes(models: Iterable[str], backends: str | Iterable[str] = "hf") -> dict[str, float]:
    """The models run on this machine (backend hf, not an API model of the registry) -> their
    size in billions of parameters; NaN where the registry does not know it."""
    models = list(models)
    backends = [backends] * len(models) if isinstance(backends, str) else list(backends)
    sizes = {}
    for name, backend in zip(models, backends, strict=True):
        if not name or backend in NO_MODEL_BACKENDS:
            continue
        try:
            spec = get_spec(name)
        except KeyError:  # not ours to report here: loading the model names the problem
            continue
        if spec.source != "openai":
            sizes[name] = float("nan") if spec.params_b is None else float(spec.params_b)
    return sizes


def stop_if_too_big_for_cpu(
    models: Iterable[str],
    backends: str | Iterable[str] = "hf",
    *,
    step: str,
    has_gpu: bool | None = None,
) -> None:
    """Raise TooBigForCPU when a local model is above CPU_MAX_PARAMS_B and no GPU is visible,
    unless MEDSAFE_ALLOW_CPU=1; the message says how to run the step at a CPU's scale."""
    big = {m: b for m, b in local_sizes(models, backends).items() if b > CPU_MAX_PARAMS_B}
    if not big or (default_device() == "cuda" if has_gpu is None else has_gpu):
        return
    named = ", ".join(f"{m} ({b:g} B parameters)" for m, b in big.items())
    if os.environ.get(ALLOW_ENV) == "1":
        log.warning("%s: running %s on a CPU, as %s=1 asks", step, named, ALLOW_ENV)
        return
    raise TooBigForCPU(
        f"{step} would run {named} on this machine, which has no GPU: models above "
        f"{CPU_MAX_PARAMS_B:g} B parameters (the paper's run up to 70 B) do not finish on a "
        "CPU, or do not fit in its memory.\n"
        "To learn the pipeline on a CPU: ./run_all.sh teach (under 30 minutes) or "
        "./run_all.sh smoke (minutes), or a student copy with a small profile injected:\n"
        f"    mkdir -p scratch && papermill notebooks/{step}.ipynb scratch/{step}.ipynb "
        f"-f params/teach/{step}.yaml --prepare-only\n"
        f"To go on anyway, set {ALLOW_ENV}=1 (in Jupyter: run `%env {ALLOW_ENV}=1` in a cell, "
        "then this cell again)."
    )


def small_run_caveat(
    profile: str, models: Iterable[str], backends: str | Iterable[str] = "hf"
) -> str:
    """The closing sentence of a smoke run, or of a run whose local models are all CPU-sized:
    it proves the pipeline, not a finding; empty otherwise."""
    sizes = local_sizes(models, backends).values()
    small = bool(sizes) and all(b <= CPU_MAX_PARAMS_B for b in sizes)  # NaN: unknown, not small
    if profile != "smoke" and not small:
        return ""
    return (
        f"**This run (profile `{profile}`) proves that the pipeline runs end to end; it shows "
        "no finding about medical safety.** Its models are tiny ones that a CPU runs and its "
        "samples are small, so the numbers above describe this run, not the paper's models."
    )


def with_small_run_caveat(
    text: str, profile: str, models: Iterable[str], backends: str | Iterable[str] = "hf"
) -> str:
    """A closing paragraph followed, as its own paragraph, by small_run_caveat when it applies."""
    caveat = small_run_caveat(profile, models, backends)
    return text + ("\n\n" + caveat if caveat else "")
