"""The compiled model's writing half: fold a fitted sklearn pipeline into the scorer artifact."""

from __future__ import annotations

from typing import Any

from churnflow.core.scorer import FORMAT, InvalidScorerArtifact


def compile_pipeline(pipeline: Any) -> dict[str, Any]:
    """Fold a fitted `preprocess → classifier` pipeline (see `pipeline.build_pipeline`) into a dict.

    Log-odds = intercept + Σ weight·(x − center) over numeric features + Σ weight[category] over
    categorical ones, which is exactly what the pipeline computes.
    """
    preprocess = pipeline.named_steps["preprocess"]
    classifier = pipeline.named_steps["classifier"]
    coefficients = classifier.coef_[0]
    intercept = float(classifier.intercept_[0])
    numeric: list[dict[str, Any]] = []
    categorical: list[dict[str, Any]] = []
    offset = 0
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder":
            continue
        if name == "num":
            for i, column in enumerate(columns):
                weight = float(coefficients[offset + i]) / float(transformer.scale_[i])
                numeric.append(
                    {
                        "name": column,
                        "weight": weight,
                        "center": float(transformer.mean_[i]),
                        "scale": float(transformer.scale_[i]),
                    }
                )
            offset += len(columns)
        elif name == "cat":
            for column, categories in zip(columns, transformer.categories_, strict=True):
                weights = [[_plain(c), float(coefficients[offset + j])] for j, c in enumerate(categories)]
                categorical.append({"name": column, "weights": weights})
                offset += len(categories)
        else:
            raise InvalidScorerArtifact(f"unexpected pipeline step {name!r}")
    if offset != len(coefficients):
        raise InvalidScorerArtifact(f"pipeline has {len(coefficients)} coefficients, compiled {offset}")
    return {"format": FORMAT, "intercept": intercept, "numeric": numeric, "categorical": categorical}


def _plain(value: Any) -> str | int:
    return int(value) if hasattr(value, "dtype") and value.dtype.kind in "iu" else value
