"""`churnflow train` against the real local stack: MLflow server, registry aliases, GCS artifacts."""

import json
import os
import subprocess
import sys
import time

import pytest

from churnflow.registry import tags
from churnflow.registry import write as registry_write
from churnflow.settings import TrainSettings
from churnflow.storage import gcs, layout

pytestmark = pytest.mark.integration


def run_cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "churnflow.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_cli_train_registers_version_one_as_champion(local_stack, tmp_path):
    env = {**os.environ, **local_stack.env(), "CHURNFLOW_MODEL_NAME": "churn-cli"}
    result = run_cli("train", env=env)
    assert result.returncode == 0, result.stderr
    assert "Registered churn-cli version 1 (aliases: champion)" in result.stdout
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] >= 0.80 and metrics["roc_auc"] >= 0.84

    again = run_cli("train", env=env)
    assert again.returncode == 0, again.stderr
    assert "Registered churn-cli version 2, run" in again.stdout  # the champion stays on v1

    positional = run_cli("promote", "2", env=env)
    assert positional.returncode == 0, positional.stderr
    assert positional.stdout == "churn-cli@champion: v1 -> v2\n"
    flag = run_cli("promote", "--version", "1", env=env)  # the older form, used by infra/promote.sh
    assert flag.returncode == 0 and flag.stdout == "churn-cli@champion: v2 -> v1\n"
    missing = run_cli("promote", "99", env=env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert "The champion alias did not move." in missing.stderr and "Traceback" not in missing.stderr
    from mlflow import MlflowClient

    client = MlflowClient(local_stack.env()["MLFLOW_TRACKING_URI"])
    assert client.get_model_version_by_alias("churn-cli", "champion").version == "1"


def test_champion_run_records_metrics_lineage_and_model(stack_env, champion):
    from mlflow import MlflowClient

    client = MlflowClient(stack_env["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias("churn", "champion")
    assert int(version.version) == champion.version.version == 1
    run = client.get_run(version.run_id)
    assert set(run.data.metrics) >= {"accuracy", "roc_auc", "precision", "recall", "f1", "log_loss", "brier"}
    assert run.data.metrics["roc_auc"] == pytest.approx(champion.metrics["roc_auc"])
    assert run.data.params["train_rows"] == "5634" and run.data.params["test_rows"] == "1409"
    assert run.data.tags[tags.DATA_FINGERPRINT] == champion.data_fingerprint
    assert len(run.data.tags[tags.CODE_VERSION]) in (40, len("unknown"))
    assert version.tags[tags.REFERENCE_URI] == champion.reference_uri


def test_artifacts_live_in_the_gcs_bucket(stack_env, champion):
    bucket = gcs.client("churnflow-test").bucket(stack_env["CHURNFLOW_BUCKET"])
    names = {blob.name for blob in bucket.list_blobs(prefix=layout.MLFLOW_ARTIFACTS_PREFIX)}
    run_id = champion.version.run_id
    assert any(n.endswith(f"{run_id}/artifacts/{registry_write.SCORER_ARTIFACT}") for n in names)
    assert any(n.endswith("/artifacts/MLmodel") for n in names)
    reference = layout.parse_gs_uri(champion.reference_uri)[1]
    assert bucket.get_blob(reference).size > 10_000


def test_champion_run_has_evaluation_plots_confusion_matrix_and_dataset_inputs(stack_env, champion, tmp_path):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from PIL import Image

    from churnflow.training import evaluation_plots

    client = MlflowClient(stack_env["MLFLOW_TRACKING_URI"])
    run = client.get_run(champion.version.run_id)
    listed = {item.path for item in client.list_artifacts(run.info.run_id, evaluation_plots.ARTIFACT_DIR)}
    plots = {
        evaluation_plots.ROC_PLOT,
        evaluation_plots.PR_PLOT,
        evaluation_plots.CALIBRATION_PLOT,
        evaluation_plots.CONFUSION_PLOT,
    }
    assert listed == plots | {evaluation_plots.CONFUSION_JSON}
    local = download_artifacts(
        run_id=run.info.run_id, artifact_path=evaluation_plots.ARTIFACT_DIR, dst_path=str(tmp_path)
    )
    for name in plots:
        with Image.open(os.path.join(local, os.path.basename(name))) as image:
            image.verify()  # a decodable PNG, not just bytes
            assert image.format == "PNG" and min(image.size) >= 200
    with open(os.path.join(local, "confusion_matrix.json")) as stored:
        counts = json.load(stored)
    assert counts["threshold"] == TrainSettings().decision_threshold == 0.5
    cells = ("true_negative", "false_positive", "false_negative", "true_positive")
    assert sum(counts[cell] for cell in cells) == counts["rows"] == int(run.data.params["test_rows"]) == 1409
    # the run's accuracy was measured at the same threshold as the confusion matrix
    accuracy = (counts["true_negative"] + counts["true_positive"]) / counts["rows"]
    assert run.data.metrics["accuracy"] == pytest.approx(accuracy)

    inputs = {item.dataset.name: item for item in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "evaluation"}
    training = inputs["training"]
    assert training.dataset.source_type == "gs"
    # MLflow keeps one dataset per (experiment, name, digest), so another test's bucket may own the record
    source = layout.parse_gs_uri(json.loads(training.dataset.source)["uri"])[1]
    assert source == layout.parse_gs_uri(champion.reference_uri)[1]
    assert source == layout.reference_object(champion.data_fingerprint)
    assert training.dataset.digest == champion.data_fingerprint[:36]
    input_tags = {tag.key: tag.value for tag in training.tags}
    assert input_tags["mlflow.data.context"] == "training"
    assert input_tags[tags.DATA_FINGERPRINT] == champion.data_fingerprint
    assert json.loads(training.dataset.profile)["num_rows"] == 5634
    evaluation_tags = {tag.key: tag.value for tag in inputs["evaluation"].tags}
    assert evaluation_tags["mlflow.data.context"] == "evaluation"
    assert json.loads(inputs["evaluation"].dataset.profile)["num_rows"] == 1409


LOADER = """
import json, os, sys
assert set(k for k in os.environ if k.startswith(("MLFLOW", "STORAGE", "CHURNFLOW"))) == {"MLFLOW_TRACKING_URI"}
import mlflow, pandas as pd
from churnflow.core.scorer import CompiledScorer
from churnflow.registry.read import RegistryClient
from churnflow.core.schema import EXAMPLE_CUSTOMER
model = mlflow.sklearn.load_model("models:/churn@champion")
client = RegistryClient(os.environ["MLFLOW_TRACKING_URI"])
version = client.version_by_alias("churn", "champion")
scorer = CompiledScorer(client.scorer_artifact(version))
sklearn = float(model.predict_proba(pd.DataFrame([EXAMPLE_CUSTOMER]))[0, 1])
print(json.dumps({"version": version.version, "sklearn": sklearn, "compiled": scorer.probability(EXAMPLE_CUSTOMER)}))
"""


def test_separate_process_with_only_the_tracking_uri_loads_both_models(local_stack, champion):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "MLFLOW_TRACKING_URI": local_stack.env()["MLFLOW_TRACKING_URI"],
    }
    result = subprocess.run([sys.executable, "-c", LOADER], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["version"] == 1
    assert loaded["compiled"] == pytest.approx(loaded["sklearn"], abs=1e-12)
    assert 0.0 < loaded["compiled"] < 1.0


def test_unreachable_mlflow_fails_fast_and_clearly(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "CHURNFLOW_BUCKET": "nowhere"}
    started = time.monotonic()
    result = run_cli("train", env=env)
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert "MLflow tracking server at http://127.0.0.1:9 is unreachable" in result.stderr
    assert "Nothing was registered." in result.stderr


def test_bad_data_registers_nothing(stack_env, tmp_path):
    from churnflow.training.data import DataValidationError, read_raw
    from churnflow.training.register import run_training

    raw = read_raw()
    raw.loc[41, "Contract"] = "Weekly"
    path = tmp_path / "bad.csv"
    raw.to_csv(path, index=False)
    settings = TrainSettings(model_name="churn-bad-data", data_uri=str(path))
    with pytest.raises(DataValidationError, match="row 42 .* column 'Contract': unknown category 'Weekly'"):
        run_training(settings)
    from mlflow import MlflowClient

    assert MlflowClient(stack_env["MLFLOW_TRACKING_URI"]).search_model_versions("name='churn-bad-data'") == []


def test_training_data_loads_from_a_gs_uri(stack_env):
    from churnflow.training.data import load_dataset

    uri = layout.gs_uri(stack_env["CHURNFLOW_BUCKET"], layout.TRAINING_DATA)
    assert len(load_dataset(uri, project="churnflow-test")) == 7043
