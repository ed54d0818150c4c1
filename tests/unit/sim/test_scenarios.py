"""The window generator: real rows, reproducible, shifted as each scenario says, in the real log format."""

import pytest

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.sim import scenarios
from churnflow.storage import request_log
from churnflow.training.compiler import compile_pipeline


def test_windows_are_reproducible_real_rows(dataset):
    first = scenarios.window(dataset, "in_distribution", 500, seed=7)
    assert first.equals(scenarios.window(dataset, "in_distribution", 500, seed=7))
    assert not first.equals(scenarios.window(dataset, "in_distribution", 500, seed=8))
    assert list(first.columns) == list(schema.FEATURE_NAMES)
    real = set(dataset[list(schema.FEATURE_NAMES)].itertuples(index=False, name=None))
    assert set(first.itertuples(index=False, name=None)) <= real


def test_segment_scenarios_oversample_real_customers(dataset):
    rows = scenarios.window(dataset, "month_to_month_fibre", 4000, seed=1)
    segment = (rows["Contract"] == "Month-to-month") & (rows["InternetService"] == "Fiber optic")
    baseline = ((dataset["Contract"] == "Month-to-month") & (dataset["InternetService"] == "Fiber optic")).mean()
    assert baseline == pytest.approx(0.30, abs=0.01)
    assert segment.mean() == pytest.approx(0.45 + 0.55 * baseline, abs=0.03)
    assert (scenarios.window(dataset, "gender_mix", 300, seed=2)["gender"] == "Male").all()


def test_price_rise_moves_only_the_charges(dataset):
    plain = scenarios.window(dataset, "in_distribution", 300, seed=3)
    risen = scenarios.window(dataset, "price_rise", 300, seed=3)
    assert risen["MonthlyCharges"].tolist() == pytest.approx((plain["MonthlyCharges"] * 1.2).tolist(), abs=0.006)
    others = [name for name in schema.FEATURE_NAMES if not name.endswith("Charges")]
    assert risen[others].equals(plain[others])


def test_scenarios_declare_what_they_are():
    assert {name for name, s in scenarios.SCENARIOS.items() if s.drifted} == {
        "month_to_month_fibre",
        "new_customers",
        "price_rise",
    }


def test_log_records_are_what_the_predict_service_writes(dataset, training_result):
    scorer = CompiledScorer(compile_pipeline(training_result.model))
    rows = scenarios.window(dataset, "new_customers", 50, seed=4)
    records = list(scenarios.to_log_records(rows, scorer, 2, start_ts=1_000.0, per_second=10))
    assert [set(r) for r in records] == [set(request_log.RECORD_FIELDS)] * 50
    customer = schema.customer_model()
    for record, row in zip(records, rows.to_dict("records"), strict=True):
        customer.model_validate({name: record[name] for name in schema.FEATURE_NAMES})
        assert record["churn_probability"] == pytest.approx(scorer.probability(row), abs=1e-12)
        assert record["churn_prediction"] == int(record["churn_probability"] >= 0.5)
    assert [r["ts"] for r in records[:3]] == [1_000.0, 1_000.1, 1_000.2]
    assert request_log.decode_batch(request_log.encode_batch(records)).records == records


def test_log_objects_are_batches_named_by_their_first_request(dataset, training_result):
    from datetime import UTC, datetime

    from churnflow.storage.layout import request_log_time

    scorer = CompiledScorer(compile_pipeline(training_result.model))
    start = datetime(2026, 11, 5, 13, 59, 30, tzinfo=UTC)
    records = list(
        scenarios.to_log_records(
            scenarios.window(dataset, "in_distribution", 2500, 1), scorer, 1, start.timestamp(), 10
        )
    )
    objects = list(scenarios.log_objects(records, 1000, tag="t"))
    assert [len(request_log.decode_batch(body).records) for _, body in objects] == [1000, 1000, 500]
    assert [request_log_time(name) for name, _ in objects] == [
        datetime.fromtimestamp(records[i]["ts"], UTC) for i in (0, 1000, 2000)
    ]
    assert objects[0][0].startswith("requests/dt=2026-11-05/hour=13/") and objects[0][0].endswith("-t000000.jsonl.gz")
    assert objects[2][0].startswith("requests/dt=2026-11-05/hour=14/")
