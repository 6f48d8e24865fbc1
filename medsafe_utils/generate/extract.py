"""Extract one request per item from a generated list of harmful requests.

Generators write their lists in many formats: numbered (`1.`, `1)`, `(1)`, `#1`, `1:`), bullets
(`-`, `*`, `•`), bold labels (`**Prompt 1:** ...`, `1. **Title**: ...`), quoted lines, Markdown
headings with the request below them, `Prompt 3: ...` labels, several items run together on one
line, Markdown tables and JSON arrays. Intro and outro prose (`Sure! Here are twenty ...:`,
`Note: ...`), explanations under an item and chat special tokens are dropped.

    from medsafe_utils.generate.extract import extract_requests
    extract_requests("Sure! Here:\\n1. **How can I fake a chart?**\\n2. Skip the consent form.")
    # -> ["How can I fake a chart?", "Skip the consent form."]
"""

from __future__ import annotations

import json
import re

MIN_WORDS = 4  # the published Llama-3 requests have at least 4 words

SPECIAL_TOKEN = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|\[/?INST\]|<</?SYS>>")
# A list marker at the start of a line: numbers, bullets, '#1', '(1)', 'Q1:'.
MARKER = re.compile(
    r"^\s*(?:\(?\d{1,4}[.):]|\d{1,4}\s+[-–—]\s|#\d{1,3}[.):]?|[-*•·+▪►–—](?=\s)"
    r"|[a-z][.)](?=\s))\s*"
)
HEADING = re.compile(r"^\s*#{1,6}\s+")
# A label before the request: 'Prompt 3:', 'Example:', 'Request #2 -', 'Q1.'.
LABEL = re.compile(
    r"^(?:(?:harmful |unethical )?(?:prompt|example|request|question|instruction"
    r"|command|query|scenario|item)s?\s*#?\s*\d{0,3}|q\d{0,3})\s*[:.)\-–—]\s*",
    re.IGNORECASE,
)
# Lines that explain an item or the list, never a request themselves.
EXPLANATION = re.compile(
    r"^(?:explanation|reason|rationale|note|why|violation|violates|principle"
    r"|answer|response|category|justification|harm|disclaimer)\b[^:]{0,30}:",
    re.IGNORECASE,
)
BOLD_TITLE = re.compile(r"^(\*\*|__)(?P<title>[^*_]{1,120}?)\1\s*[:\-–—]\s*(?P<rest>.+)$")
QUOTES = [('"', '"'), ("“", "”"), ("'", "'"), ("‘", "’"), ("`", "`"), ("«", "»")]
INLINE_ITEMS = re.compile(r"(?:(?<=^)|(?<=\s))\(?\d{1,3}[.)]\s+")


def _strip_quotes(text: str) -> str:
    """Remove one pair of matching quotes around the whole text (repeatedly)."""
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for left, right in QUOTES:
            inner = text[1:-1]
            if left in ("'", "‘"):
                inner = re.sub(r"(?<=\w)['’](?=\w)|(?<=s)['’](?=\s)", "", inner)  # apostrophes
            if text.startswith(left) and text.endswith(right) and left not in inner:
                text, changed = text[1:-1].strip(), True
    return text


def _is_quoted(text: str) -> bool:
    """The whole line is one quoted string."""
    return any(text.startswith(a) and text.endswith(b) and len(text) > 2 for a, b in QUOTES[:2])


def clean_item(text: str) -> str:
    """One item without markers, labels, emphasis, quotes, trailing notes or extra whitespace."""
    text = SPECIAL_TOKEN.sub(" ", text).strip()
    text = HEADING.sub("", text)
    text = MARKER.sub("", text, count=1)
    text = LABEL.sub("", text)
    bold = BOLD_TITLE.match(text)
    if bold and len(bold["rest"].split()) >= MIN_WORDS:
        text = bold["rest"]  # '**Falsified records**: How can I ...' -> the request
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text).replace("**", "")
    text = LABEL.sub("", text.strip())
    text = _strip_quotes(text.strip())
    text = re.sub(
        r"\s*\((?:this |which )?(?:violates?|violating|breach)[^()]*\)\s*$",
        "",
        text,
        flags=re.IGNORECASE,
    )
    return re.sub(r"\s+", " ", _strip_quotes(text.strip())).strip()


def _cut_off(text: str) -> bool:
    """A quotation opened and never closed: the item was cut off (by max_new_tokens)."""
    return (text.startswith('"') and text.count('"') % 2 == 1) or (
        text.startswith("“") and "”" not in text
    )


def _is_request(text: str) -> bool:
    """Long enough, not a title or intro (those end with ':'), not an explanation, not cut off."""
    return (
        len(text.split()) >= MIN_WORDS
        and not text.endswith(":")
        and not EXPLANATION.match(text)
        and not _cut_off(text)
    )


def _json_items(text: str) -> list[str] | None:
    """The strings of a JSON array (of strings, or of objects with a request-like field)."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(data, list):
        return None
    items = []
    for entry in data:
        if isinstance(entry, dict):
            entry = next(
                (
                    entry[k]
                    for k in ("request", "prompt", "question", "instruction", "text")
                    if isinstance(entry.get(k), str)
                ),
                None,
            )
        if isinstance(entry, str):
            items.append(entry)
    return items or None


def _table_cell(line: str) -> str | None:
    """The longest cell of a Markdown table row; None for separator rows."""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
        return None
    return max(cells, key=len)


def _split_inline(line: str) -> list[str]:
    """'1. A? 2. B? 3. C?' on one line -> three items; other lines unchanged."""
    starts = [m.start() for m in INLINE_ITEMS.finditer(line)]
    numbers = [int(re.search(r"\d+", line[s:]).group()) for s in starts]
    if len(starts) < 2 or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return [line]
    pieces = [line[: starts[0]]] if line[: starts[0]].strip() else []
    bounds = starts + [len(line)]
    pieces += [line[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return pieces


def _candidates(text: str) -> list[str]:
    """Raw item texts in order: list items, quoted lines, headed blocks, table cells."""
    lines = [p for line in text.splitlines() for p in _split_inline(line)]
    out: list[str] = []
    pending = False  # a label-only item or a heading waits for its text on a following line
    for raw in lines:
        line = SPECIAL_TOKEN.sub(" ", raw).strip()
        if not line:
            continue
        if line.startswith("|") and line.count("|") >= 2:
            cell = _table_cell(line)
            if cell:
                out.append(cell)
            continue
        is_item = bool(MARKER.match(line)) or bool(LABEL.match(line.strip("*_ ")))
        if HEADING.match(line) or is_item or _is_quoted(line):
            item = clean_item(line)
            if _is_request(item):
                out.append(item)
                pending = False
            else:
                pending = not EXPLANATION.match(item)  # a title or a bare label: text follows
            continue
        if pending:
            out.append(line)
            pending = False
    return out


def extract_requests(text: str) -> list[str]:
    """The requests in one generation, in order, cleaned, each once (empty if none found)."""
    items = _json_items(text) if text.lstrip().startswith(("[", "```")) else None
    raw = items if items is not None else _candidates(text)
    seen: set[str] = set()
    requests = []
    for item in raw:
        cleaned = clean_item(item)
        if _is_request(cleaned) and cleaned not in seen:
            seen.add(cleaned)
            requests.append(cleaned)
    return requests
