"""COPY text cells: the fast path for plain text gives what escaping every character gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from blobstore.copy import NULL, text_cell

REFERENCE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                           "\x00": "\ufffd"})


@given(st.text())
def test_a_text_cell_is_the_value_with_copy_s_special_characters_escaped(value: str) -> None:
    assert text_cell(value) == value.translate(REFERENCE)


def test_special_characters_are_escaped_and_none_is_null() -> None:
    assert text_cell("a\tb\nc\rd\\e\x00f") == "a\\tb\\nc\\rd\\\\e\ufffdf"
    assert text_cell("plain +447700900123 é") == "plain +447700900123 é"
    assert text_cell(None) == NULL
