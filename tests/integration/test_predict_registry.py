"""The predict service against the real MLflow registry: load, hot swap under load, outages, bad versions."""

import threading
import time

import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

from churnflow.core import schema
from churnflow.registry import tags as tag_names
from churnflow.registry.read import RegistryClient
from churnflow.serving import create_app
from churnflow.settings import PredictSettings
from churnflow.storage import gcs, layout, request_log

pytestmark = pytest.mark.integration

EXAMPLE = schema.EXAMPLE_CUSTOMER


@pytest.fixture
def mlflow_client(stack_env):
    from mlflow import MlflowClient

    return MlflowClient(stack_env["MLFLOW_TRACKING_URI"])


def publish(client, name, champion, scorer=None, alias=True):
    """Register a new version of `name` from the champion's run, its scorer tag pointing at `scorer`.

    `scorer` is an artifact path in that run, or a dict logged there first; default: the champion's.
    """
    import mlflow

    source = client.get_model_version(champion.version.name, str(champion.version.version))
    tags = dict(source.tags)
    if isinstance(scorer, dict):
        path = f"compiled/test-{time.monotonic_ns()}.json"
        client.log_dict(source.run_id, scorer, path)
        tags[tag_names.SCORER_ARTIFACT] = path
    elif scorer is not None:
        tags[tag_names.SCORER_ARTIFACT] = scorer
    version = mlflow.register_model(source.source, name, tags=tags)
    if alias:
        client.set_registered_model_alias(name, "champion", version.version)
    return int(version.version)


def champion_artifact(stack_env):
    registry = RegistryClient(stack_env["MLFLOW_TRACKING_URI"])
    return registry.scorer_artifact(registry.version_by_alias("churn", "champion"))


def settings_for(tmp_path, **overrides):
    return PredictSettings(spool_dir=tmp_path / "spool", log_flush_age_s=0.2, **overrides)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_serves_the_registered_champion_and_logs_to_gcs(stack_env, champion, tmp_path):
    import mlflow

    sklearn = mlflow.sklearn.load_model(f"models:/churn/{champion.version.version}")
    expected = float(sklearn.predict_proba(pd.DataFrame([EXAMPLE]))[0, 1])
    with TestClient(create_app(settings_for(tmp_path))) as client:
        info = client.get("/model").json()
        body = client.post("/predict", json=EXAMPLE).json()
    assert info["version"] == champion.version.version and info["alias"] == "champion"
    assert info["run_id"] == champion.version.run_id
    assert info["data_fingerprint"] == champion.data_fingerprint
    assert info["metrics"]["roc_auc"] == pytest.approx(champion.metrics["roc_auc"], abs=1e-6)
    assert body["model_version"] == champion.version.version
    assert abs(body["churn_probability"] - expected) < 1e-9

    bucket = gcs.client(stack_env["CHURNFLOW_PROJECT"]).bucket(stack_env["CHURNFLOW_BUCKET"])
    records = [
        record
        for blob in bucket.list_blobs(prefix=layout.REQUEST_LOG_PREFIX)
        for record in request_log.decode_batch(blob.download_as_bytes()).records
        if record["request_id"] == body["request_id"]
    ]
    assert len(records) == 1
    assert records[0]["churn_probability"] == body["churn_probability"]
    assert {k: records[0][k] for k in schema.FEATURE_NAMES} == EXAMPLE


def test_swap_under_concurrent_requests_fails_none(stack_env, champion, mlflow_client, tmp_path):
    name = "churn-swap"
    artifact = champion_artifact(stack_env)
    first = publish(mlflow_client, name, champion)
    app = create_app(settings_for(tmp_path, model_name=name, poll_interval_s=0.1))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/predict"

    stop = threading.Event()
    seen = [[] for _ in range(4)]

    def load(results):
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                response = http.post(url, json=EXAMPLE)
                body = response.json() if response.status_code == 200 else {}
                results.append((response.status_code, body.get("model_version"), body.get("churn_probability")))

    workers = [threading.Thread(target=load, args=(results,)) for results in seen]
    try:
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        second = publish(mlflow_client, name, champion, {**artifact, "intercept": artifact["intercept"] + 1.0})
        assert wait_for(lambda: all(results and results[-1][1] == second for results in seen))
        time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        server.should_exit = True
        thread.join()

    every = [r for results in seen for r in results]
    assert len(every) > 100 and {status for status, _, _ in every} == {200}
    assert {version for _, version, _ in every} == {first, second}
    probabilities = {version: {p for _, v, p in every if v == version} for version in (first, second)}
    assert all(len(values) == 1 for values in probabilities.values())  # each version scores consistently
    assert probabilities[first] != probabilities[second]  # and the scorer moved with the label
    for results in seen:  # per client, versions only move forward: no request went back to v1
        versions = [version for _, version, _ in results]
        assert versions == sorted(versions)
    assert app.state.services.stats()["model_holder"]["swaps"] == 2  # one process: loaded, then swapped


def test_registry_outage_never_stops_serving(stack_env, champion, tmp_path):
    with TestClient(create_app(settings_for(tmp_path, poll_interval_s=0.05, registry_timeout_s=0.5))) as client:
        services = client.app.state.services
        services.holder.registry.base = "http://127.0.0.1:9"  # the discard port: nothing listens
        assert wait_for(lambda: services.holder.stats.registry_errors >= 3)
        for _ in range(20):
            body = client.post("/predict", json=EXAMPLE).json()
            assert body["model_version"] == champion.version.version
        assert client.get("/ready").status_code == 200
        assert client.get("/stats").json()["model_holder"]["last_error"].startswith("registry unreachable")


def test_broken_versions_are_refused_until_a_valid_one_comes(stack_env, champion, mlflow_client, tmp_path):
    name = "churn-refusals"
    good = publish(mlflow_client, name, champion)
    settings = settings_for(tmp_path, model_name=name, poll_interval_s=0.05)
    with TestClient(create_app(settings)) as client:
        holder = client.app.state.services.holder
        broken = [
            publish(mlflow_client, name, champion, scorer="compiled/does-not-exist.json", alias=False),
            publish(mlflow_client, name, champion, scorer={"format": "churnflow.core.scorer-logreg/v1"}, alias=False),
        ]
        for number, version in enumerate(broken, start=1):
            mlflow_client.set_registered_model_alias(name, "champion", str(version))
            # a refused version is retried at every poll: wait for this one's refusal, not for a count
            assert wait_for(lambda v=version: f"refused {name} v{v}:" in (holder.stats.last_error or ""))
            assert holder.stats.refused >= number
            assert client.post("/predict", json=EXAMPLE).json()["model_version"] == good
        fixed = publish(mlflow_client, name, champion)
        assert wait_for(lambda: holder.current.number == fixed)
        assert client.post("/predict", json=EXAMPLE).json()["model_version"] == fixed


def test_no_champion_means_503_until_one_is_set(stack_env, champion, mlflow_client, tmp_path):
    name = "churn-late"
    settings = settings_for(tmp_path, model_name=name, poll_interval_s=0.05)
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").status_code == 503
        assert client.post("/predict", json=EXAMPLE).status_code == 503
        version = publish(mlflow_client, name, champion)
        assert wait_for(lambda: client.get("/ready").status_code == 200)
        assert client.post("/predict", json=EXAMPLE).json()["model_version"] == version
