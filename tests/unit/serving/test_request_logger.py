"""The request logger batches rows to the store, spools what fails, recovers what a dead process left."""

import asyncio
import os
import signal
import time
import urllib.parse

import pytest

from churnflow.core import schema
from churnflow.serving.contract import customer_struct
from churnflow.serving.log_segment import OPEN, SEALED, SEGMENT_BYTES
from churnflow.serving.request_logger import RequestLogger
from churnflow.settings import PredictSettings
from churnflow.storage import layout, request_log
from churnflow.storage.upload import ObjectExists


class Store:
    """An object store that can be switched off; keeps uploads by name."""

    def __init__(self):
        self.objects = {}
        self.down = False

    def __call__(self, name, data, timeout_s=None):
        if self.down:
            raise ConnectionError("store unreachable")
        self.objects[name] = data

    def records(self):
        return [r for data in self.objects.values() for r in request_log.decode_batch(data).records]


CUSTOMER = customer_struct()(**schema.EXAMPLE_CUSTOMER)


def spooled_batches(directory):
    """The spooled batches in a spool directory (not the segments, spare ones included)."""
    return sorted(p.name for p in directory.iterdir() if p.suffix not in (OPEN, SEALED))


def log_rows(logger, count, prefix="r"):
    for i in range(count):
        logger.log_one(f"{prefix}{i}", 1.0 + i, 3, CUSTOMER, 0.25, False, 0.5)


async def wait_for(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def store():
    return Store()


def test_records_follow_the_shared_format(store, tmp_path):
    logger = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
    log_rows(logger, 2)
    batch = [CUSTOMER] * 3
    logger.log_batch("b", 9.0, 3, batch, (0.1, 0.5, 0.9), (False, True, True), 1.5)
    asyncio.run(logger.flush())
    (name,) = store.objects
    assert name.startswith(layout.REQUEST_LOG_PREFIX + "dt=") and name.endswith(".jsonl.gz")
    records = store.records()
    assert [r["request_id"] for r in records] == ["r0", "r1", "b-0", "b-1", "b-2"]
    assert all(tuple(r) == request_log.RECORD_FIELDS for r in records)
    instance = records[0]["instance"]
    assert records[0] == {
        "request_id": "r0", "ts": 1.0, "model_version": 3, **schema.EXAMPLE_CUSTOMER,
        "churn_probability": 0.25, "churn_prediction": 0, "latency_ms": 0.5, "instance": instance, "seq": 1,
    }  # fmt: skip
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5] and {r["instance"] for r in records} == {instance}
    assert [r["churn_prediction"] for r in records[2:]] == [0, 1, 1]
    assert logger.stats.uploaded == logger.stats.accepted == 5


def test_a_segment_that_fills_up_is_sealed_and_the_next_one_continues(store, tmp_path):
    logger = RequestLogger(store, tmp_path, flush_rows=10**6, flush_age_s=60)
    big = [CUSTOMER] * 4000  # ~2.3 MB of lines: two do not fit in one segment
    logger.log_batch("a", 1.0, 3, big, [0.5] * 4000, [True] * 4000, 1.0)
    logger.log_batch("b", 2.0, 3, big * 3, [0.5] * 12000, [True] * 12000, 1.0)  # larger than a segment
    asyncio.run(logger.flush())
    assert len(store.objects) == 2 and not spooled_batches(tmp_path)
    assert [r["seq"] for r in store.records()] == list(range(1, 16001))
    assert logger.stats.uploaded == 16000 and SEGMENT_BYTES < 12000 * 500


def test_flushes_by_size_and_by_age(store, tmp_path):
    async def scenario():
        by_size = RequestLogger(store, tmp_path / "a", flush_rows=10, flush_age_s=60)
        by_size.start()
        log_rows(by_size, 10)
        await wait_for(lambda: by_size.stats.uploaded == 10)
        await by_size.stop()
        by_age = RequestLogger(store, tmp_path / "b", flush_rows=1000, flush_age_s=0.05)
        by_age.start()
        log_rows(by_age, 3)
        await wait_for(lambda: by_age.stats.uploaded == 3)
        await by_age.stop()

    asyncio.run(scenario())


def test_stop_flushes_everything(store, tmp_path):
    async def scenario():
        logger = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
        logger.start()
        log_rows(logger, 7)
        await logger.stop()
        return logger

    logger = asyncio.run(scenario())
    assert len(store.records()) == 7 and logger.pending == 0


def test_outage_spools_then_uploads_each_batch_once(store, tmp_path):
    logger = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
    store.down = True
    log_rows(logger, 4, "a")
    asyncio.run(logger.flush())
    log_rows(logger, 5, "b")
    asyncio.run(logger.flush())
    spooled = spooled_batches(tmp_path)
    assert len(spooled) == 2 and not store.objects
    # the 2nd flush retried the spooled batch, failed, and spooled the new one without trying it
    assert logger.stats.spooled == 9 and logger.stats.failed_uploads == 2
    store.down = False
    log_rows(logger, 1, "c")
    asyncio.run(logger.flush())
    assert {urllib.parse.unquote(name) for name in spooled} < set(store.objects)  # under their own names
    assert len(store.objects) == 3 and not spooled_batches(tmp_path)
    assert sorted(r["request_id"] for r in store.records()) == sorted(
        [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(5)] + ["c0"]
    )
    assert logger.stats.uploaded == logger.stats.accepted == 10 and logger.stats.spooled == 0


def test_a_new_process_uploads_what_an_earlier_one_spooled(store, tmp_path):
    async def scenario():
        store.down = True
        crashed = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
        log_rows(crashed, 6)
        await crashed.stop()
        assert crashed.stats.spooled == 6
        store.down = False
        successor = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=0.05)
        successor.start()
        assert successor.stats.spooled == 6
        await wait_for(lambda: len(store.records()) == 6)
        await successor.stop()
        assert successor.stats.spooled == 0 and not list(tmp_path.iterdir())

    asyncio.run(scenario())


def test_unwritable_spool_counts_rows_as_lost(store, tmp_path):
    store.down = True
    logger = RequestLogger(store, tmp_path / "missing", flush_rows=1000, flush_age_s=60)
    log_rows(logger, 2)
    asyncio.run(logger.flush())
    assert logger.stats.lost == 2


def test_an_upload_whose_answer_was_lost_is_stored_once(tmp_path):
    class LosesTheFirstAnswer(Store):
        """Stores every object but fails the first call after storing; refuses to replace (create-only)."""

        def __call__(self, name, data, timeout_s=None):
            if name in self.objects:
                raise ObjectExists(name)
            self.objects[name] = data
            if len(self.objects) == 1:
                raise TimeoutError("answer lost")

    store = LosesTheFirstAnswer()
    logger = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
    log_rows(logger, 3, "a")
    asyncio.run(logger.flush())
    assert logger.stats.spooled == 3 and len(spooled_batches(tmp_path)) == 1
    log_rows(logger, 2, "b")
    asyncio.run(logger.flush())  # the spooled batch is already there: counted as uploaded, not duplicated
    assert not spooled_batches(tmp_path)
    assert sorted(r["request_id"] for r in store.records()) == ["a0", "a1", "a2", "b0", "b1"]
    assert logger.stats.uploaded == 5 and logger.stats.spooled == 0


def test_a_row_that_cannot_be_encoded_is_counted_lost_and_the_others_are_kept(store, tmp_path, caplog):
    logger = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
    log_rows(logger, 2, "a")
    logger.log_one("bad", 1.0, 3, {"not": "a Struct"}, 0.5, True, 0.5)
    log_rows(logger, 2, "c")
    asyncio.run(logger.flush())
    assert sorted(r["request_id"] for r in store.records()) == ["a0", "a1", "c0", "c1"]
    assert logger.stats.lost == 1 and logger.stats.uploaded == 4 and logger.pending == 0
    assert "cannot encode" in caplog.text


class FileStore:
    """A create-only object store in a directory, shared with forked processes."""

    def __init__(self, root):
        self.root = root

    def __call__(self, name, data, timeout_s=None):
        try:
            with (self.root / urllib.parse.quote(name, safe="")).open("xb") as file:
                file.write(data)
        except FileExistsError:
            raise ObjectExists(name) from None

    def records(self):
        return [r for path in self.root.iterdir() for r in request_log.decode_batch(path.read_bytes()).records]


def killed_child(work):
    """Run `work()` in a forked process that then dies by SIGKILL (no flush, no cleanup)."""
    pid = os.fork()
    if pid == 0:
        try:
            work()
        except BaseException:
            os._exit(1)  # the parent's check below fails
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def restart(store, spool):
    """A successor process's logger: started (recovering what it finds) and stopped."""

    async def scenario():
        logger = RequestLogger(store, spool, flush_rows=1000, flush_age_s=60)
        logger.start()
        await logger.stop()
        return logger

    return asyncio.run(scenario())


@pytest.fixture
def shared(tmp_path):
    """A store and a spool directory shared with forked processes (the spool not made yet)."""
    (tmp_path / "objects").mkdir()
    return FileStore(tmp_path / "objects"), tmp_path / "spool"


def test_rows_logged_before_a_kill_9_are_uploaded_by_the_next_process(shared):
    store, spool = shared

    def log_then_die():
        logger = RequestLogger(store, spool, flush_rows=1000, flush_age_s=60)
        spool.mkdir()
        log_rows(logger, 7)
        logger.log_batch("b", 9.0, 3, [CUSTOMER] * 3, (0.1, 0.5, 0.9), (False, True, True), 1.5)

    killed_child(log_then_die)
    assert [p.suffix for p in spool.iterdir()] == [OPEN] and not store.records()

    logger = restart(store, spool)
    records = store.records()
    assert [r["request_id"] for r in records] == [f"r{i}" for i in range(7)] + ["b-0", "b-1", "b-2"]
    assert [r["seq"] for r in records] == list(range(1, 11))
    assert logger.stats.recovered == 10 and logger.stats.accepted == 0 and not list(spool.iterdir())


def test_a_segment_uploaded_before_the_kill_is_not_stored_twice(shared, monkeypatch):
    store, spool = shared

    def upload_then_die_before_clearing_the_segment():
        monkeypatch.setattr("churnflow.serving.log_segment.Segment.clear", lambda self: None)
        monkeypatch.setattr("churnflow.serving.log_segment.Segment.discard", lambda self: None)
        logger = RequestLogger(store, spool, flush_rows=1000, flush_age_s=60)
        spool.mkdir()
        log_rows(logger, 5)
        asyncio.run(logger.flush())

    killed_child(upload_then_die_before_clearing_the_segment)
    assert [p.suffix for p in spool.iterdir()] == [SEALED] and len(store.records()) == 5

    assert restart(store, spool).stats.recovered == 5
    assert sorted(r["request_id"] for r in store.records()) == [f"r{i}" for i in range(5)]  # once each
    assert not list(spool.iterdir())


def test_a_torn_last_line_is_dropped_on_recovery(store, tmp_path):
    line = request_log.encode_lines([{"request_id": "whole"}])
    (tmp_path / f"dead-000001{OPEN}").write_bytes(line + b'{"request_id": "to' + bytes(4096))
    assert restart(store, tmp_path).stats.recovered == 1
    assert [r["request_id"] for r in store.records()] == ["whole"]
    ((name, _),) = store.objects.items()
    assert name.endswith("-dead-000001.jsonl.gz")


def test_a_live_process_segment_is_left_alone(store, tmp_path):
    async def scenario():
        live = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
        log_rows(live, 3)
        other = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
        other.start()
        await other.stop()
        assert other.stats.recovered == 0 and not store.objects
        await live.flush()

    asyncio.run(scenario())
    assert len(store.records()) == 3


def test_without_write_ahead_rows_wait_in_memory(store, tmp_path):
    logger = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60, write_ahead=False)
    log_rows(logger, 3)
    assert not list(tmp_path.iterdir())
    asyncio.run(logger.flush())
    assert len(store.records()) == 3


def test_beyond_the_spool_cap_a_batch_is_dropped_counted_and_logged(store, tmp_path, caplog):
    logger = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60, spool_max_bytes=700)
    store.down = True
    log_rows(logger, 10, "a")
    asyncio.run(logger.flush())
    assert logger.stats.spooled == 10 and 0 < logger.stats.spool_bytes <= 700
    log_rows(logger, 10, "b")
    asyncio.run(logger.flush())
    assert logger.stats.dropped == 10 and logger.stats.spooled == 10 and "dropped: the spool is full" in caplog.text
    store.down = False
    asyncio.run(logger.flush())
    assert sorted(r["request_id"] for r in store.records()) == [f"a{i}" for i in range(10)]
    assert logger.stats.spool_bytes == 0


def test_shutdown_with_gcs_hanging_stays_within_its_bound_and_spools_the_rest(tmp_path, caplog):
    class Hangs:
        """Every upload hangs until its timeout."""

        def __init__(self):
            self.calls = []

        def __call__(self, name, data, timeout_s=None):
            self.calls.append((time.monotonic(), timeout_s))
            time.sleep(timeout_s)
            raise TimeoutError("no answer")

    store = Hangs()

    async def scenario():
        logger = RequestLogger(store, tmp_path, flush_rows=5, flush_age_s=60, upload_timeout_s=0.2, shutdown_s=0.3)
        logger.start()
        log_rows(logger, 5, "a")  # a full segment: its upload is under way when stop() begins
        await wait_for(lambda: store.calls)
        log_rows(logger, 3, "b")
        stopping = time.monotonic()
        await logger.stop()
        return logger, stopping

    caplog.set_level("INFO")
    logger, stopping = asyncio.run(scenario())
    # each upload's timeout ends by the deadline: the one under way by its own timeout, later ones by what is left
    assert all(timeout <= 0.2 for _, timeout in store.calls)
    assert all(began + timeout <= stopping + 0.3 + 0.05 for began, timeout in store.calls if began >= stopping)
    assert logger.stats.spooled == 8 and logger.pending == 0
    assert "(bound 0.3 s); 8 rows wait in the spool" in caplog.text


def test_an_upload_may_not_outlast_the_shutdown_bound():
    with pytest.raises(ValueError, match="log_upload_timeout_s"):
        PredictSettings(log_upload_timeout_s=6, log_shutdown_s=5)


def test_a_delivered_segment_is_zeroed_and_reused_and_a_successor_skips_it(shared):
    store, spool = shared

    def reuse_then_die():
        logger = RequestLogger(store, spool, flush_rows=1000, flush_age_s=60)
        spool.mkdir()
        log_rows(logger, 3, "a")
        asyncio.run(logger.flush())
        (spare,) = spool.iterdir()
        assert spare.suffix == SEALED and not spare.read_bytes().strip(b"\0")
        log_rows(logger, 2, "b")
        asyncio.run(logger.flush())
        assert [p.suffix for p in spool.iterdir()] == [SEALED]  # the same file, reused

    killed_child(reuse_then_die)
    assert restart(store, spool).stats.recovered == 0 and not list(spool.iterdir())
    assert sorted(r["request_id"] for r in store.records()) == ["a0", "a1", "a2", "b0", "b1"]
