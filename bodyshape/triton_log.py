"""Which model failed to load, and why, from a ``tritonserver`` 2.51 log.

The patterns follow 2.51's wording; a newer server may word its messages differently, and
then a failed start still fails, only with the log's last lines instead of the model's name
(``tests/test_faults.py::test_broken_model_repository_names_the_model`` pins the wording).
Messages are logged as one quoted line with escaped newlines ("...\\n\\nAt:\\n  traceback").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Log lines that report a model that failed to load: a ``reason`` group and, where the
#: line names it, a ``model`` group (else the model is the folder of a path in the reason).
LOAD_FAILURES = (
    re.compile(r"failed to load '(?P<model>[^']+)' version \d+: (?P<reason>.*)"),
    re.compile(r"Poll failed for model directory '(?P<model>[^']+)': (?P<reason>.*)"),
    re.compile(r"Failed to (?:pre)?initialize Python stub: (?P<reason>.*)"),
    re.compile(
        r"ensemble '?(?P<model>[\w.-]+)'? (?P<reason>depends on '[^']+' which has no loaded version"
        r"|contains models that are not available[^\"]*)"
    ),
)


def first_line(reason: str, limit: int = 400) -> str:
    """A logged error message without its escaped traceback and quoting, shortened."""
    reason = reason.split("\\n")[0].split("\n")[0].strip().rstrip('"').rstrip(";").strip()
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _failure(line: str, repo_prefix: str) -> tuple[str, str] | None:
    """(model, reason) if ``line`` reports a failed load of a model it can name."""
    for pattern in LOAD_FAILURES:
        m = pattern.search(line)
        if not m:
            continue
        reason = first_line(m.group("reason"))
        model = m.groupdict().get("model")
        if model is None:  # the stub's message names a file of the model's folder
            i = reason.find(repo_prefix)
            model = reason[i + len(repo_prefix) :].split("/")[0] if i >= 0 else None
        return (model, reason) if model else None
    return None


def load_failures(log_text: str, model_repository: str, index: Sequence[dict] = ()) -> dict[str, str]:
    """{model: reason} for each model that failed to load, from the server's log and, when
    given, its repository index (``POST /v2/repository/index``); models that others depend on
    come first, ensembles that only failed because of them last."""
    failures: dict[str, str] = {}
    repo_prefix = str(model_repository).rstrip("/") + "/"
    for line in log_text.splitlines():
        found = _failure(line, repo_prefix)
        if found and found[0] not in failures:
            failures[found[0]] = found[1]
    for entry in index:
        if entry.get("state") == "UNAVAILABLE" and entry.get("reason") and entry["name"] not in failures:
            failures[entry["name"]] = first_line(entry["reason"])
    return dict(sorted(failures.items(), key=lambda kv: kv[1].startswith(("depends on", "contains"))))
