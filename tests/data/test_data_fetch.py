"""Fetching without a mirror: downloads by URL and prompt texts rebuilt from the original sources,
both checked against the manifest's sha256 (network replaced by local bytes)."""

import io
import urllib.parse

import pytest

from medsafe_utils.core import paths
from medsafe_utils.core.errors import DataError
from medsafe_utils.data import manifest, sources
from medsafe_utils.data.source_extract import extract

PREFIXES = "medsafetybench/prompts/refusal_prefixes.txt"


@pytest.fixture
def no_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.MIRROR_ENV, raising=False)
    monkeypatch.setenv(paths.DOWNLOADS_ENV, str(tmp_path / "downloads"))
    monkeypatch.setattr(manifest, "_sources", {})
    return tmp_path / "downloads"


def test_download_by_url_is_verified(no_mirror, data_mirror, monkeypatch):
    rel = "advbench/harmful_behaviors.csv"
    asked = []

    def fake_urlopen(url, timeout):
        asked.append(url)
        return io.BytesIO((data_mirror / rel).read_bytes())

    monkeypatch.setattr(manifest.urllib.request, "urlopen", fake_urlopen)
    path = manifest.ensure_file(rel)
    assert asked == [manifest.manifest_entry(rel)["url"]]
    assert path.read_bytes() == (data_mirror / rel).read_bytes()


def _prefix_source(lines):
    items = ",\n".join(f"    {line!r}" for line in lines)
    return f"import torch\n\nPREFIXES = [\n{items}\n]\n\ndef f():\n    return 1\n"


def test_prompt_text_rebuilt_from_source(no_mirror, data_mirror, monkeypatch):
    lines = (data_mirror / PREFIXES).read_text().splitlines()
    entry = manifest.manifest_entry(PREFIXES)
    assert entry["extract"]["source"].endswith("/exps/adv_attack/gcg.py")
    monkeypatch.setattr(manifest, "_download_text", lambda url: _prefix_source(lines))
    path = manifest.ensure_file(PREFIXES)
    assert path.read_bytes() == (data_mirror / PREFIXES).read_bytes()


def test_rebuilt_text_that_differs_fails_its_checksum(no_mirror, data_mirror, monkeypatch):
    lines = (data_mirror / PREFIXES).read_text().splitlines()
    monkeypatch.setattr(manifest, "_download_text", lambda url: _prefix_source(lines[:-1]))
    with pytest.raises(DataError, match="refusal_prefixes.txt: checksum mismatch"):
        manifest.ensure_file(PREFIXES)
    assert not (no_mirror / PREFIXES).exists()


SOURCE = '''
sys_prompt = "Be " + "safe.\\n"
def build(prompt):
    template = "[INST] {x} " + prompt
    other = f"""
        Q: "{question}" {{literal}}"""
    return template
df['p'] = df.apply(lambda row: "A: " + row['question'] + " B:", axis=1)
df['q'] = df.apply(lambda row: f"<|user|>: {row['question']}", axis=1)
'''


def test_extract_rules():
    assert extract(SOURCE, {"assign": "sys_prompt"}) == "Be safe.\n"
    assert extract(SOURCE, {"assign": "template", "function": "build"}) == "[INST] {{x}} {prompt}"
    assert extract(SOURCE, {"assign": "other"}) == '\n        Q: "{question}" {{literal}}'
    assert extract(SOURCE, {"lambda": 1}) == "A: {question} B:"
    assert extract(SOURCE, {"lambda": 2}) == "<|user|>: {question}"
    assert extract(SOURCE, {"lambda": 2}).format(question="Q?") == "<|user|>: Q?"
    with pytest.raises(DataError, match="matches 0 node"):
        extract(SOURCE, {"assign": "missing"})
    with pytest.raises(DataError, match="no function"):
        extract(SOURCE, {"assign": "template", "function": "nope"})


def _closed_port() -> int:
    """A local port nothing listens on (a connection to it is refused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_network_is_one_message_naming_file_url_and_mirror(no_mirror):
    rel = "advbench/harmful_behaviors.csv"
    data = manifest.load_manifest()
    url = f"http://127.0.0.1:{_closed_port()}/harmful_behaviors.csv"
    for dataset in data["datasets"].values():
        for entry in dataset["files"]:
            if entry["path"] == rel:
                entry["url"] = url
    with pytest.raises(DataError) as err:
        manifest.ensure_file(rel, data)
    message = str(err.value)
    assert message.startswith(f"{rel}: could not be downloaded from {url} (URLError: ")
    assert paths.MIRROR_ENV in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no urllib traceback
    assert not (no_mirror / rel).exists() and not list((no_mirror / "advbench").iterdir())


def test_a_source_that_cannot_be_downloaded_names_it(no_mirror):
    url = f"http://127.0.0.1:{_closed_port()}/exps/adv_attack/gcg.py"
    with pytest.raises(DataError, match=rf"gcg\.py: could not be downloaded from {url} .*"):
        manifest._download_text(url)


# -------------------------------------------------------- the released code (data/released/)

RELEASED = {  # mirror folder -> the raw URL of its repository at the pinned commit
    "released/med-safety-bench/": sources.MSB_RAW + "/",
    "released/meditron/": sources.MEDITRON_RAW + "/",
}


def _released_files(data_mirror):
    for folder, raw in RELEASED.items():
        for path in sorted((data_mirror / folder).rglob("*")):
            if path.is_file():
                yield path, path.relative_to(data_mirror).as_posix(), folder, raw


def test_every_released_source_file_is_in_the_manifest(data_mirror):
    """Each file of the released code in the mirror (docs aside: *.md, LICENSE) has a manifest
    entry with its sha256 and its canonical URL (the repository's raw file at the pinned
    commit, the path URL-encoded: `bash%20scripts`)."""
    listed = 0
    for path, rel, folder, raw in _released_files(data_mirror):
        if path.suffix in sources.SKIP_SUFFIXES or path.name.startswith(sources.SKIP_PREFIXES):
            assert path.suffix == ".md" or path.name.startswith("LICENSE"), rel
            continue
        entry = manifest.manifest_entry(rel)
        assert entry["sha256"] == manifest.sha256_of(path), rel
        assert entry["url"] == raw + urllib.parse.quote(rel.removeprefix(folder)), rel
        listed += 1
    entries = [
        e
        for name in ("released_med_safety_bench", "released_meditron")
        for e in manifest.load_manifest()["datasets"][name]["files"]
    ]
    assert listed == len(entries) > 0  # and no entry without its file
    assert any("bash%20scripts" in e["url"] for e in entries)


def test_fetch_verifies_the_released_code(no_mirror, data_mirror, monkeypatch):
    """Without a mirror each released file is downloaded from its URL and checked; a changed
    byte fails with the file's name."""
    rel = "released/med-safety-bench/exps/adv_attack/bash scripts/adv_ama_idx_0.sh"
    original = (data_mirror / rel).read_bytes()
    asked = []

    def fake_urlopen(url, timeout):
        asked.append(url)
        return io.BytesIO(original)

    monkeypatch.setattr(manifest.urllib.request, "urlopen", fake_urlopen)
    assert manifest.ensure_file(rel).read_bytes() == original
    assert asked == [manifest.manifest_entry(rel)["url"]]
    other = "released/med-safety-bench/exps/adv_attack/bash scripts/adv_ama_idx_1.sh"
    monkeypatch.setattr(
        manifest.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(original)
    )
    with pytest.raises(DataError, match="adv_ama_idx_1.sh: checksum mismatch"):
        manifest.ensure_file(other)
    assert not (no_mirror / other).exists()
