"""Request field types: text that can be stored and tokenized (valid UTF-8, no lone surrogates).

JSON may carry "\ud800", which Python decodes to a str that no encoder accepts; left alone it
fails deep inside (500, and the keep-alive connection is reset). Here it is a 400 at the door."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8(text: str) -> str:
    if not is_utf8(text):
        raise ValueError("text must be valid Unicode (a lone surrogate such as \\ud800 is not)")
    return text


Text = Annotated[str, AfterValidator(_utf8)]
