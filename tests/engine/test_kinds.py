"""The registry of checkpoint kinds: every kind is known once loaded, a duplicate or unknown name is refused."""

import pytest

from cellscreen.engine.checkpoint import get_kind, register_kind
from cellscreen.engine.kinds import list_kinds
from cellscreen.errors import UserError


def test_every_kind_is_registered():
    assert list_kinds() == ["ensemble", "network", "svm"]


def test_a_duplicate_kind_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_kind("svm", files=lambda folder, meta: [])(lambda path, meta: None)
    assert get_kind("svm").files  # the first registration stays


def test_an_unknown_kind_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown checkpoint kind 'forest'; known: ensemble, network, svm"):
        get_kind("forest")
