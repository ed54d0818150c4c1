"""Conditional writes and compare-and-swap on the real GCS emulator: the primitives behind locks and state."""

import subprocess
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import BaseModel

from churnflow.local.services import fake_gcs_binary
from churnflow.storage import gcs
from conftest import free_ports

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


class Counter(BaseModel):
    n: int = 0


def test_sixteen_concurrent_compare_and_swaps_all_land(stack_env):
    bucket = stack_env["CHURNFLOW_BUCKET"]
    name = f"state/counter-{uuid.uuid4().hex[:8]}.json"

    def increment(_):
        return gcs.compare_and_swap("test", bucket, name, Counter, lambda c: Counter(n=(c.n if c else 0) + 1))

    with ThreadPoolExecutor(16) as pool:
        swaps = list(pool.map(increment, range(16)))
    assert sorted(s.after.n for s in swaps) == list(range(1, 17))  # each saw the one before it
    assert gcs.read_model("test", bucket, name, Counter) == (Counter(n=16), max(s.generation for s in swaps))
    gcs.delete_object("test", bucket, name)


def test_compare_and_swap_may_leave_the_object_and_gives_up_under_endless_contention(stack_env):
    bucket = stack_env["CHURNFLOW_BUCKET"]
    name = f"state/contended-{uuid.uuid4().hex[:8]}.json"
    first = gcs.write_model("test", bucket, name, Counter(n=1), 0)
    kept = gcs.compare_and_swap("test", bucket, name, Counter, lambda c: None)
    assert (kept.before, kept.after, kept.generation) == (Counter(n=1), None, first)

    def meddle(current):  # another writer always gets in between the read and the write
        gcs.write_model(
            "test", bucket, name, Counter(n=current.n + 1), gcs.read_model("test", bucket, name, Counter)[1]
        )
        return Counter(n=0)

    with pytest.raises(gcs.Contention, match="3 attempts"):
        gcs.compare_and_swap("test", bucket, name, Counter, meddle, gcs.Backoff(attempts=3, initial_s=0.001))
    assert gcs.read_model("test", bucket, name, Counter)[0] == Counter(n=4)
    gcs.delete_object("test", bucket, name)


def test_json_objects_stay_valid_json(stack_env):
    with pytest.raises(ValueError):
        gcs.write_json("test", stack_env["CHURNFLOW_BUCKET"], "state/nan.json", {"x": float("nan")}, 0)


@pytest.fixture
def gcs_behind_another_name(tmp_path, monkeypatch):
    """fake-gcs-server as compose runs it: objects' mediaLink names a host (`gcs`) this process cannot resolve."""
    [port] = free_ports(1)
    argv = [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
    argv += ["-backend", "memory", "-external-url", f"http://gcs.invalid:{port}"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.timeout(60)
def test_json_objects_are_read_through_the_clients_endpoint_not_the_media_link(gcs_behind_another_name):
    gcs.ensure_bucket("p", "behind")
    gcs.write_json("p", "behind", "state.json", {"a": 1}, 0)
    blob = gcs.client("p").bucket("behind").get_blob("state.json")
    assert blob.media_link.startswith("http://gcs.invalid:")  # the emulator names the other host...
    assert gcs.read_json("p", "behind", "state.json") == ({"a": 1}, blob.generation)  # ...and the read works
