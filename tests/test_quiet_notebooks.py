"""The executed notebooks of the smoke chain show only what their steps did: nothing on stderr
(drawn as an error), no warning text in any output, and every progress bar saved at its end (a
widget bar is saved at its first state, 0%)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nbformat
import pytest

from medsafe_utils.core import quiet
from medsafe_utils.pipeline.run import notebooks

NOTEBOOKS = notebooks()

# What may show all the same: (pattern of the whole line, why).
ALLOWED = [
    (
        r"WARNING medsafe_utils\.models\.loading: float16 \(the released precision\) on CPU: "
        r"running float32 instead",
        "ours, on purpose: 04's smoke run keeps the paper's float16 and says a CPU runs float32",
    ),
    (
        r"WARNING medsafe_utils\.finetune\.qlora: training on CPU with torch\.float32 compute "
        r"\(4-bit NF4 weights\)",
        "ours, on purpose: 06 says that its CPU training computes in float32 (DESIGN.md's facts)",
    ),
]
# A warning as Python, logging or a traceback prints one; not the word in a text a step shows
# (05's rubric reads "It either offers a warning, or ...").
WARNING_TEXT = re.compile(r"\b(?:[A-Z]\w*Warning|WARNING)\b|[Dd]eprecat|Traceback")
# tqdm's bar: "desc:  40%|####      | 2/5 [00:01<00:01, ...]"
BAR = re.compile(r"\d+%\|[^|\n]*\|\s*(\d+)/(\d+)\s*\[")


def shown(text: str) -> str:
    """Text as a notebook front end draws it: a carriage return starts its line again."""
    return "\n".join(line.rstrip("\r").split("\r")[-1] for line in text.split("\n"))


def _outputs(cell) -> list[tuple[str, str]]:
    """(kind, text) of a cell's outputs: consecutive streams of one name joined (as a front end
    draws them), every text/* view of other outputs, a widget marked as one."""
    parts: list[tuple[str, str]] = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            kind = output.name
            if parts and parts[-1][0] == kind:
                parts[-1] = (kind, parts[-1][1] + output.text)
                continue
            parts.append((kind, output.text))
        else:
            data = output.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                parts.append(("widget", data.get("text/plain", "")))
            parts += [(mime, value) for mime, value in data.items() if mime.startswith("text/")]
            if output.output_type == "error":
                parts.append(("error", f"{output.ename}: {output.evalue}"))
    return [(kind, shown(text)) for kind, text in parts]


def _allowed(line: str) -> bool:
    return any(re.fullmatch(pattern, line.strip()) for pattern, _why in ALLOWED)


def noise(executed: Path) -> list[str]:
    """What an executed notebook shows that its step did not say: each as 'cell N: ...'."""
    found = []
    for index, cell in enumerate(nbformat.read(executed, as_version=4).cells):
        for kind, text in _outputs(cell):
            lines = [line for line in text.splitlines() if line.strip() and not _allowed(line)]
            where = f"{executed.name} cell {index} ({kind})"
            if kind in ("stderr", "widget", "error") and lines:
                found.append(f"{where}: {lines[0][:200]!r}")
                continue
            found += [f"{where}: {line[:200]!r}" for line in lines if WARNING_TEXT.search(line)]
            for line in lines:
                for done, total in BAR.findall(line):
                    if int(done) < int(total):
                        found.append(f"{where}: a bar saved at {done}/{total}: {line[:120]!r}")
    return found


FLOAT16_ON_CPU = (
    "WARNING medsafe_utils.models.loading: float16 (the released precision) on CPU: running "
    "float32 instead"
)


def test_noise_finds_what_a_reader_did_not_cause(tmp_path):
    """The check fails on a stderr warning, a widget bar, a text bar saved short of its total
    and a warning printed to stdout; it passes a finished text bar and an allowed log line."""
    stream = nbformat.v4.new_output
    noisy = nbformat.v4.new_code_cell("x")
    noisy.outputs = [
        stream("stream", name="stderr", text="a.py:1: FutureWarning: `x` is deprecated\n"),
        stream(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                "text/plain": "Loading weights:   0%|          | 0/272 [00:00<?, ?it/s]",
            },
        ),
        stream("stream", name="stdout", text="\rGCG:   0%|  | 0/3 [00:00<?]\rGCG:  67%|# | 2/3 ["),
        stream("stream", name="stdout", text="00:01<00:00]\nUserWarning: something\n"),
    ]
    quiet = nbformat.v4.new_code_cell("y")
    quiet.outputs = [
        stream("stream", name="stdout", text="\rbar:   0%|  | 0/3 [00:00<?]\rbar: 100%|##| 3/3 ["),
        stream("stream", name="stdout", text="00:01<00:00]\n\rLoading:  50%|# | 1/2 [\r     \r"),
        stream("stream", name="stderr", text=f"{FLOAT16_ON_CPU}\n"),
        stream("stream", name="stdout", text="Score 2: It either offers a warning, or ...\n"),
    ]
    for name, cells in (("noisy", [noisy]), ("quiet", [quiet])):
        nb = nbformat.v4.new_notebook()
        nb.cells = cells
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    found = noise(tmp_path / "noisy.ipynb")
    assert [f.split(": ", 1)[0] for f in found] == [
        "noisy.ipynb cell 0 (stderr)",
        "noisy.ipynb cell 0 (widget)",
        "noisy.ipynb cell 0 (text/plain)",  # the widget's 0/272 as a bar, too
        "noisy.ipynb cell 0 (stdout)",  # the warning
        "noisy.ipynb cell 0 (stdout)",  # GCG saved at 2/3
    ], found
    assert noise(tmp_path / "quiet.ipynb") == []


@pytest.fixture
def notebook_logging():
    """The session's logging set back after a test that calls quiet.log_to_stdout() (in the test:
    its handlers take the sys.stdout that capsys puts there during the test)."""
    root, ours = logging.getLogger(), logging.getLogger("medsafe_utils")
    saved = root.handlers[:], root.level, ours.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def test_logs_of_ours_on_stdout_warnings_on_stderr_libraries_info_hidden(capsys, notebook_logging):
    quiet.log_to_stdout()
    logging.getLogger("medsafe_utils.x").info("ours")
    logging.getLogger("papermill").info("Input Notebook: a library's INFO")
    logging.getLogger("medsafe_utils.x").warning("careful")
    out, err = capsys.readouterr()
    assert (out, err) == ("INFO medsafe_utils.x: ours\n", "WARNING medsafe_utils.x: careful\n")


def test_known_warnings_only_are_silenced():
    import warnings

    known = [
        "`past_key_values` is deprecated and will be removed in version 5.40.0 for "
        "`LlamaForCausalLM.forward`. Use `cache` instead.",
        "`past_key_values` is deprecated and will be removed in version 6.0.0 for "
        "`LlamaForCausalLM.generate`. Use `cache` instead.",
    ]
    other = [
        "`past_key_values` is deprecated and will be removed in version 6.0.0 for "
        "`LlamaForCausalLM.generate`. Use `cache` instead. And more.",  # not the whole message
        "`gradient_checkpointing_enable` is deprecated and will be removed in v6.",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.silence_known_warnings()
        for message in known + other:
            warnings.warn(message, FutureWarning, stacklevel=1)
        warnings.warn(known[0], UserWarning, stacklevel=1)  # another category
    assert [str(w.message) for w in caught] == [*other, known[0]]


def test_text_bars_on_stdout_end_at_their_totals_nested_too(capsys):
    """A bar inside another (GCG's steps inside the goals) shares its line: no cursor moves."""
    for _ in quiet.TextBar(range(2), desc="outer"):
        for _ in quiet.TextBar(range(3), desc="inner"):
            pass
    out, err = capsys.readouterr()
    assert not err and "\x1b" not in out, out
    assert BAR.findall(shown(out)) == [("3", "3"), ("3", "3"), ("2", "2")], out


def test_the_gguf_conversion_bar_is_a_text_bar_too(capsys):
    """SmolLM2's one conversion from GGUF (in whichever notebook first loads it) draws a text bar
    on stdout that clears itself, not a bar on stderr."""
    from transformers import modeling_gguf_pytorch_utils as gguf

    quiet.text_progress_bars()
    for _ in gguf.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors", mininterval=0):
        pass
    out, err = capsys.readouterr()
    assert not err and "Converting and de-quantizing GGUF tensors" in out, (out, err)
    assert out.endswith("\r"), "cleared when done (leave=False)"


def test_a_log_line_inside_a_bar_does_not_keep_its_unfinished_state(capsys, notebook_logging):
    quiet.log_to_stdout()
    for i in quiet.TextBar(range(2), desc="runs", mininterval=0):
        logging.getLogger("medsafe_utils.x").info("run %d", i)
    out = shown(capsys.readouterr().out)
    assert "INFO medsafe_utils.x: run 0" in out.splitlines(), out
    assert BAR.findall(out) == [("2", "2")], out


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_notebook_is_quiet(path, smoke_results):
    step_dir = smoke_results(path.stem)
    assert not noise(step_dir.parent / "executed" / path.name)
