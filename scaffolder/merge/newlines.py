"""Line-ending styles: merge by content, write each file back in the style it had.

A checkout with ``core.autocrlf=true`` turns every ``\\n`` of a package into ``\\r\\n``, while
the base and the new render use ``\\n``. Merged as they are, every line would differ; so a file
whose line ends are mostly ``\\r\\n`` is merged with them as ``\\n`` and written back with
``\\r\\n``. Files with ``\\n`` line ends (most) are merged exactly as they are.
"""

from __future__ import annotations

LF = "\n"
CRLF = "\r\n"


def line_ending(text: str) -> str:
    """The file's line-ending style: ``CRLF`` when most of its line ends are ``\\r\\n``."""
    crlf = text.count(CRLF)
    return CRLF if crlf and 2 * crlf >= text.count(LF) else LF


def to_lf(text: str, ending: str) -> str:
    """``text`` as merged: ``\\r\\n`` read as ``\\n`` in a ``CRLF`` file, else unchanged."""
    return text.replace(CRLF, LF) if ending == CRLF else text


def from_lf(text: str, ending: str) -> str:
    """Merged ``text`` written back in the file's style (the inverse of :func:`to_lf`)."""
    return text.replace(LF, CRLF) if ending == CRLF else text
