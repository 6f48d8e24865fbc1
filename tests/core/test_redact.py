"""No credentials recorded: a URL with user:password@ or a secret in its query is refused where it
comes in and redacted wherever one is written down."""

import pytest

from medsafe_utils.backends.api import OpenAIBackend
from medsafe_utils.core.redact import REDACTED, check_url, redact, redact_url, secrets_in

CLEAN = ["http://localhost:8000/v1", "https://example.org/openai/v1?api-version=2024-06-01", ""]
DIRTY = {
    "https://alice:s3cret@proxy.example/v1": "https://proxy.example/v1",
    "https://tok@proxy.example/v1": "https://proxy.example/v1",
    "https://proxy.example/v1?api_key=s3cret&x=1": f"https://proxy.example/v1?api_key={REDACTED}&x=1",
    "http://h:8000/v1?access_token=s3cret": f"http://h:8000/v1?access_token={REDACTED}",
    "https://h/v1?sig=s3cret&api-version=1": f"https://h/v1?sig={REDACTED}&api-version=1",
}


@pytest.mark.parametrize("url", CLEAN)
def test_a_clean_url_passes_unchanged(url):
    assert not secrets_in(url)
    assert redact_url(url) == url and check_url(url, "x") == url


@pytest.mark.parametrize("url,clean", DIRTY.items())
def test_credentials_are_redacted_and_refused(url, clean):
    assert redact_url(url) == clean and "s3cret" not in clean
    with pytest.raises(ValueError, match=r"judge_base_url: the URL .* carries credentials") as err:
        check_url(url, "judge_base_url")
    assert "s3cret" not in str(err.value)


def test_redact_reaches_into_nested_records():
    record = {
        "params": {"url": "https://u:s3cret@h/v1", "n": 3},
        "rev": ["api:http://h/?key=s3cret"],
    }
    assert "s3cret" not in str(redact(record))
    assert redact(record)["params"]["n"] == 3


def test_the_api_backend_refuses_a_base_url_with_credentials():
    with pytest.raises(ValueError, match=r"m: base_url: the URL https://h/v1 carries"):
        OpenAIBackend("m", base_url="https://user:s3cret@h/v1")
    assert OpenAIBackend("m", base_url="http://localhost:8000/v1").revision.endswith("8000/v1")
