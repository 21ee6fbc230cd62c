"""The hot-path JSON codec: same results as the stdlib, whatever the input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from resilient_llm._json import dumps, loads

pytestmark = pytest.mark.timeout(30)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_round_trip_matches_the_stdlib(value: object) -> None:
    assert loads(dumps(value)) == json.loads(json.dumps(value)) == value


def test_pydantic_models_in_a_body_are_dumped() -> None:
    class Msg(BaseModel):
        role: str
        content: str | None = None

    assert loads(dumps({"messages": [Msg(role="user", content="é")]})) == {
        "messages": [{"role": "user", "content": "é"}]
    }


def test_what_orjson_refuses_falls_back_to_the_stdlib() -> None:
    assert loads(dumps({"big": 2**80, 1: "int key"})) == {"big": 2**80, "1": "int key"}


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - orjson and json word their messages differently
        loads(b'{"cut": ')
