"""Quiet notebooks: what a notebook's import cell calls (`setup_notebook()`) so that its saved
outputs show what the step did, not noise a reader did not cause. One place for the four
concerns: where log records go, what progress bars are saved as, the few known warnings
that are silenced (each by its whole message, with its reason), and tables shown uncut
(core.display)."""

from __future__ import annotations

import logging
import re
import sys
import warnings

from tqdm.std import tqdm

from medsafe_utils.core.display import set_display_options

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

# (message pattern, category, module it is attributed to or "" for any, why): warnings that are
# not a reader's to act on, each matched by its whole message.
QUIET_WARNINGS: list[tuple[str, type[Warning], str, str]] = [
    (
        re.escape(
            "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use "
            "`is_activation_checkpointing` instead."
        ),
        FutureWarning,
        "transformers.modeling_utils",
        "peft 0.21's PeftModel.__init__ reads the old property (our code reads none)",
    ),
    (
        r"`past_key_values` is deprecated and will be removed in version [0-9.]+ for "
        r"`\w+\.(forward|generate)`\. Use `cache` instead\.",
        FutureWarning,
        "",  # raised where torch, peft or our call passes it on
        "transformers 5.25 renamed the KV-cache argument, but generate() given `cache` ran 5x "
        "slower here (SmolLM2 on CPU, 16 new tokens: 17.3 s vs 3.5 s, the same text): we pass "
        "`past_key_values` until that is fixed",
    ),
]


class TextBar(tqdm):
    """tqdm's text bar, on stdout unless told otherwise: an executed notebook saves a text bar's
    last state (100%); a widget bar (tqdm.auto) is saved as its first (0%), and stderr is drawn
    as an error."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("file") is None:
            kwargs["file"] = sys.stdout  # looked up now: the kernel replaces sys.stdout
        kwargs.setdefault("mininterval", 1.0)  # s: each refresh is kept as one saved output
        # one line for nested bars (GCG's steps inside the goals): a notebook does not move the
        # cursor up, so tqdm's stacked positions print escape codes and leave stale lines
        kwargs.setdefault("position", 0)
        super().__init__(*args, **kwargs)


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno < logging.WARNING


class BarAwareHandler(logging.StreamHandler):
    """A stream handler that writes through tqdm.write: an open bar is cleared first and drawn
    again after, so that a log line never carries a bar's unfinished state."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def log_to_stdout(level: int = logging.INFO) -> None:
    """medsafe_utils' records at `level` and above on stdout (a notebook draws stderr as an error);
    WARNING and above of any logger on stderr; other libraries' INFO not shown."""
    out = BarAwareHandler(sys.stdout)
    out.addFilter(_below_warning)
    err = BarAwareHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    # force: running the import cell again replaces the handlers instead of doubling them
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, handlers=[out, err], force=True)
    logging.getLogger("medsafe_utils").setLevel(level)


def silence_known_warnings() -> None:
    """Ignore QUIET_WARNINGS, each by its whole message, category and module, no more."""
    for pattern, category, module, _why in QUIET_WARNINGS:
        warnings.filterwarnings(
            "ignore", pattern + r"\Z", category, re.escape(module) + r"\Z" if module else ""
        )


def text_progress_bars() -> None:
    """transformers' bars (loading weights, converting a GGUF) as TextBar that clear themselves
    when done; sentence-transformers shows bars only at INFO (log_to_stdout keeps it at WARNING)."""
    from transformers.utils import logging as hf_logging

    if not hasattr(hf_logging, "set_tqdm_hook"):  # before transformers 5.x had the hook
        hf_logging.disable_progress_bar()
        return

    def cleared_bar(*args, **kwargs):
        return TextBar(*args, **{"leave": False, **kwargs})

    def hook(factory, args, kwargs):
        if factory is hf_logging.EmptyTqdm:  # bars switched off: keep them off
            return factory(*args, **kwargs)
        return cleared_bar(*args, **kwargs)

    hf_logging.set_tqdm_hook(hook)
    # the GGUF conversion calls tqdm.auto itself, not through the hook (transformers 5.x)
    from transformers import modeling_gguf_pytorch_utils as gguf

    gguf.tqdm = cleared_bar


def setup_notebook(level: int = logging.INFO) -> None:
    """A notebook's setup: logging to stdout, text progress bars, third-party warnings silenced,
    tables shown uncut."""
    log_to_stdout(level)
    set_display_options()
    silence_known_warnings()
    text_progress_bars()
