"""The request logger batches rows to the store, spools what fails and loses nothing."""

import asyncio
import urllib.parse

import pytest

from churnflow.core import schema
from churnflow.serving.contract import customer_struct
from churnflow.serving.request_logger import ENCODE_ROWS, RequestLogger
from churnflow.storage import layout, request_log
from churnflow.storage.upload import ObjectExists


class Store:
    """An object store that can be switched off; keeps uploads by name."""

    def __init__(self):
        self.objects = {}
        self.down = False

    def __call__(self, name, data):
        if self.down:
            raise ConnectionError("store unreachable")
        self.objects[name] = data

    def records(self):
        return [r for data in self.objects.values() for r in request_log.decode_batch(data).records]


CUSTOMER = customer_struct()(**schema.EXAMPLE_CUSTOMER)


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
    assert records[0] == {
        "request_id": "r0", "ts": 1.0, "model_version": 3, **schema.EXAMPLE_CUSTOMER,
        "churn_probability": 0.25, "churn_prediction": 0, "latency_ms": 0.5,
    }  # fmt: skip
    assert [r["churn_prediction"] for r in records[2:]] == [0, 1, 1]
    assert logger.stats.uploaded == logger.stats.accepted == 5


def test_a_large_flush_is_encoded_in_chunks_and_read_back_whole(store, tmp_path):
    logger = RequestLogger(store, tmp_path, flush_rows=10**6, flush_age_s=60)
    log_rows(logger, 3 * ENCODE_ROWS + 7)
    asyncio.run(logger.flush())
    (data,) = store.objects.values()
    decoded = request_log.decode_batch(data)
    assert [r["request_id"] for r in decoded.records] == [f"r{i}" for i in range(3 * ENCODE_ROWS + 7)]
    assert decoded.bad_lines == 0


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
    spooled = sorted(p.name for p in tmp_path.iterdir())
    assert len(spooled) == 2 and not store.objects
    # the 2nd flush retried the spooled batch, failed, and spooled the new one without trying it
    assert logger.stats.spooled == 9 and logger.stats.failed_uploads == 2
    store.down = False
    log_rows(logger, 1, "c")
    asyncio.run(logger.flush())
    assert {urllib.parse.unquote(name) for name in spooled} < set(store.objects)  # under their own names
    assert len(store.objects) == 3 and not list(tmp_path.iterdir())
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

        def __call__(self, name, data):
            if name in self.objects:
                raise ObjectExists(name)
            self.objects[name] = data
            if len(self.objects) == 1:
                raise TimeoutError("answer lost")

    store = LosesTheFirstAnswer()
    logger = RequestLogger(store, tmp_path, flush_rows=1000, flush_age_s=60)
    log_rows(logger, 3, "a")
    asyncio.run(logger.flush())
    assert logger.stats.spooled == 3 and len(list(tmp_path.iterdir())) == 1
    log_rows(logger, 2, "b")
    asyncio.run(logger.flush())  # the spooled batch is already there: counted as uploaded, not duplicated
    assert not list(tmp_path.iterdir())
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
