"""Conditional writes on the real GCS emulator: the primitive behind locks and trigger state."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from churnflow.storage import gcs

pytestmark = pytest.mark.integration


def test_exactly_one_of_sixteen_concurrent_creators_wins(stack_env):
    bucket = stack_env["CHURNFLOW_BUCKET"]

    def create(i):
        try:
            return gcs.write_json("test", bucket, "state/race.json", {"writer": i}, 0)
        except gcs.PreconditionFailed:
            return None

    with ThreadPoolExecutor(16) as pool:
        generations = list(pool.map(create, range(16)))
    winners = [i for i, g in enumerate(generations) if g is not None]
    assert len(winners) == 1
    value, generation = gcs.read_json("test", bucket, "state/race.json")
    assert value == {"writer": winners[0]} and generation == generations[winners[0]]
    gcs.delete_object("test", bucket, "state/race.json")


def test_compare_and_swap_rejects_a_stale_generation(stack_env):
    bucket = stack_env["CHURNFLOW_BUCKET"]
    first = gcs.write_json("test", bucket, "state/cas.json", {"n": 1}, 0)
    second = gcs.write_json("test", bucket, "state/cas.json", {"n": 2}, first)
    with pytest.raises(gcs.PreconditionFailed):
        gcs.write_json("test", bucket, "state/cas.json", {"n": 3}, first)
    # (fake-gcs-server ignores preconditions on DELETE, so a stale conditional delete is not tested here)
    assert gcs.read_json("test", bucket, "state/cas.json") == ({"n": 2}, second)
    gcs.delete_object("test", bucket, "state/cas.json", second)
    assert gcs.read_json("test", bucket, "state/cas.json") == (None, 0)
