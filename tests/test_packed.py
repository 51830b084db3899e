"""Lists of strings packed for the index snapshot come back exactly, whatever they hold."""

from __future__ import annotations

import numpy as np
import pytest

from store_worker.indexes import packed


@pytest.mark.parametrize("strings", [
    [], [""], ["", ""], ["a"], ["socket", "", "reconnect\x00storm", "naïve ☃ 😀", "x" * 5000],
])
def test_round_trip(strings):
    st = packed.pack(strings, "p")
    assert st["p_text"].dtype == np.uint8
    assert packed.unpack(st, "p") == strings


def test_lengths_that_do_not_match_the_text_are_refused():
    st = packed.pack(["abc", "de"], "p")
    st["p_len"] = np.array([3, 5])
    with pytest.raises(ValueError, match="do not match"):
        packed.unpack(st, "p")
