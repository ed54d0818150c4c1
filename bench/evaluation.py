"""What the evaluation artifacts of a training run cost: ChurnFlow's own plots vs `mlflow.models.evaluate`.

Each variant runs in a fresh interpreter (so imports such as matplotlib count, as they do in `churnflow
train` and in each retrain job) on the same fitted pipeline and the same 1409 held-out rows, logging into
a throwaway sqlite MLflow store; the timed part is only the evaluation step:

  own       `training.register.evaluation_files` (ROC, PR, calibration, confusion matrix at the decision
            threshold) and `mlflow.log_artifacts` of them
  mlflow    `mlflow.models.evaluate(model_uri, …, model_type="classifier")` on the logged sklearn model
            (explainability off), which also loads the model back through pyfunc

Usage: python bench/evaluation.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = str(Path(__file__).resolve().parents[1] / "shared")

VARIANT = """
import json, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
import mlflow
from churnflow.training import data, pipeline, register
variant, store = sys.argv[1], sys.argv[2]
result = pipeline.train(data.load_dataset(None, "bench"))
mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
mlflow.set_experiment("bench-evaluation")
with mlflow.start_run():
    if variant == "own":
        started = time.perf_counter()
        files = register.evaluation_files(result.model, result.test, 0.5)
        register.registry_write.log_files(files)
    else:
        info = mlflow.sklearn.log_model(result.model, name="model", pip_requirements=["scikit-learn"])
        frame = pipeline.features(result.test).assign(label=data.target(result.test).to_numpy())
        started = time.perf_counter()
        evaluated = mlflow.models.evaluate(
            info.model_uri, frame, targets="label", model_type="classifier",
            evaluator_config={"log_model_explainability": False},
        )
        files = evaluated.artifacts
    seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "artifacts": sorted(files)}))
"""


def run(variant: str) -> dict:
    """One cold run of a variant in a fresh interpreter."""
    with tempfile.TemporaryDirectory(prefix="churnflow-bench-eval-") as store:
        env = {**os.environ, "PYTHONPATH": SHARED, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        done = subprocess.run(
            [sys.executable, "-c", VARIANT, variant, store], env=env, capture_output=True, text=True, timeout=600
        )
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    seconds: dict[str, list[float]] = {"own": [], "mlflow": []}
    artifacts = {}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
        for variant in seconds:
            outcome = run(variant)
            seconds[variant].append(outcome["seconds"])
            artifacts[variant] = outcome["artifacts"]
    own, theirs = (statistics.median(seconds[v]) for v in ("own", "mlflow"))
    print(f"{'variant':<8} {'median s':>9} {'runs s':<24} artifacts")
    for variant, values in seconds.items():
        runs = ", ".join(f"{value:.2f}" for value in values)
        print(f"{variant:<8} {statistics.median(values):>9.2f} {runs:<24} {', '.join(artifacts[variant])}")
    print(f"mlflow.models.evaluate / own: {theirs / own:.1f}x")


if __name__ == "__main__":
    main()
