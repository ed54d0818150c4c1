"""The hot path's msgspec Structs accept what FastAPI's pydantic models accept, with equal values.

That is what makes the hot path invisible: whatever msgspec accepts, FastAPI would have accepted with
the very same values; whatever it rejects goes to FastAPI, which rejects it too, except an integer
written with a zero fraction (`25.0`: a JSON Schema integer), which FastAPI's route scores.
"""

import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from churnflow.core import schema
from churnflow.serving.contract import INTEGER_FIELDS, BatchRequest, Customer, batch_struct, customer_struct

ODD_VALUES = st.one_of(
    st.sampled_from([c for f in schema.CATEGORICAL for c in f.categories]),
    st.integers(-5, 200),
    st.floats(-10, 2e5, allow_nan=False),
    st.sampled_from([True, False, None, "", "1", "29.85", "1e2", 10**20, [], {}, 1.0, 25.0, 0.0]),
)


@st.composite
def customer_bodies(draw):
    body = dict(schema.EXAMPLE_CUSTOMER)
    for name in draw(st.lists(st.sampled_from(schema.FEATURE_NAMES), max_size=4)):
        body[name] = draw(ODD_VALUES)
    if draw(st.booleans()):
        body.pop(draw(st.sampled_from(schema.FEATURE_NAMES)))
    if draw(st.integers(0, 9)) == 0:
        body["extra"] = 1
    return body


def assert_only_whole_floats_differ(raw, model):
    """A body msgspec refused is refused by pydantic too, unless an integer field holds a whole float."""
    try:
        model.model_validate(json.loads(raw))
    except ValidationError:
        return
    customers = json.loads(raw).get("customers", [json.loads(raw)])
    assert any(isinstance(c.get(name), float) for c in customers for name in INTEGER_FIELDS)


def test_generated_struct_mirrors_the_schema():
    struct = customer_struct()
    assert struct.__struct_fields__ == schema.FEATURE_NAMES
    decoded = msgspec.json.decode(json.dumps(schema.EXAMPLE_CUSTOMER), type=struct)
    assert msgspec.structs.asdict(decoded) == schema.EXAMPLE_CUSTOMER


@settings(max_examples=400, deadline=None)
@given(customer_bodies())
def test_msgspec_and_pydantic_accept_the_same_bodies_with_the_same_values(body):
    raw = json.dumps(body).encode()
    try:
        decoded = msgspec.json.decode(raw, type=customer_struct())
    except msgspec.ValidationError:
        assert_only_whole_floats_differ(raw, Customer)
        return
    fields = msgspec.structs.asdict(decoded)
    validated = Customer.model_validate(json.loads(raw)).model_dump()  # as FastAPI validates a body
    assert fields == validated
    assert [type(v) for v in fields.values()] == [type(v) for v in validated.values()]


@settings(max_examples=100, deadline=None)
@given(st.lists(customer_bodies(), min_size=0, max_size=3))
def test_batches_follow_the_same_rule(bodies):
    raw = json.dumps({"customers": bodies}).encode()
    try:
        decoded = msgspec.json.decode(raw, type=batch_struct())
    except msgspec.ValidationError:
        assert_only_whole_floats_differ(raw, BatchRequest)
        return
    validated = BatchRequest.model_validate(json.loads(raw))
    assert [msgspec.structs.asdict(c) for c in decoded.customers] == [c.model_dump() for c in validated.customers]
