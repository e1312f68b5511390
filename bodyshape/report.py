"""Generated blocks inside hand-written documents.

A command that measures something (``bodyshape evaluate``, ``bodyshape population``) writes its
table between two marker comments of a Markdown file and leaves the rest of the file (the
hand-written discussion, an ablation table) alone, so regenerating the numbers never deletes
the text around them.
"""

from __future__ import annotations

from pathlib import Path


def slashed(values, fmt: str = ".1f") -> str:  # noqa: ANN001  (any iterable of numbers)
    """``values`` as the docs write a measurement triple: ``"12.3 / 4.5 / 6.7"``."""
    return " / ".join(f"{v:{fmt}}" for v in values)


def markers(command: str) -> tuple[str, str]:
    """The begin and end comments of the block written by ``command``."""
    return (f"<!-- written by `{command}`: do not edit by hand -->", f"<!-- end of `{command}` output -->")


def write_block(doc: Path, command: str, block: str, title: str) -> Path:
    """Put ``block`` between ``command``'s markers in ``doc`` (appended when they are missing;
    a new file starts with ``title``)."""
    begin, end = markers(command)
    text = doc.read_text() if doc.is_file() else f"# {title}\n"
    framed = f"{begin}\n{block.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + framed + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + framed + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return doc
