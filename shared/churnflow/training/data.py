"""Loading, cleaning and checking the churn data (pandas; training and monitoring side only)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pandas as pd

from churnflow.core import schema
from churnflow.settings import REPO_ROOT

BUNDLED_DATASET = REPO_ROOT / "data" / "telco_churn.csv"
BUNDLED_SHA256 = "88be4b93fbe0cc83421af1c503794c97c342eca914c1576db7c276e61d61358a"
MAX_REPORTED_ERRORS = 20


class DataValidationError(ValueError):
    """The data breaks the schema; `errors` names each bad row and column."""

    def __init__(self, errors: list[str], total: int | None = None):
        self.errors = errors
        shown = "\n  ".join(errors[:MAX_REPORTED_ERRORS])
        more = (total or len(errors)) - min(len(errors), MAX_REPORTED_ERRORS)
        suffix = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{total or len(errors)} data error(s):\n  {shown}{suffix}")


def read_raw(source: str | Path | None = None, project: str = "churnflow-local") -> pd.DataFrame:
    """Read a churn CSV as text columns: the bundled file (sha256-checked), a local path or a gs:// URI."""
    if source is None:
        content = BUNDLED_DATASET.read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        if digest != BUNDLED_SHA256:
            raise DataValidationError(
                [f"bundled dataset {BUNDLED_DATASET} has sha256 {digest}, expected {BUNDLED_SHA256}"]
            )
    elif str(source).startswith("gs://"):
        from churnflow.storage import gcs

        content = gcs.read_bytes(project, str(source))
    else:
        content = Path(source).read_bytes()
    return pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)


def _row_label(frame: pd.DataFrame, index: object) -> str:
    position = frame.index.get_loc(index)
    label = f"row {position + 1}"
    if schema.ID_COLUMN in frame.columns:
        label += f" ({schema.ID_COLUMN} {frame.at[index, schema.ID_COLUMN]})"
    return label


def clean(raw: pd.DataFrame, require_target: bool = True) -> pd.DataFrame:
    """Typed, validated copy of a raw frame; raises DataValidationError naming every bad row and column.

    Blank `TotalCharges` (new customers, never billed) become 0. Rows count from 1, after the header.
    """
    wanted = list(schema.FEATURE_NAMES) + ([schema.TARGET] if require_target else [])
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DataValidationError([f"missing column(s): {', '.join(missing)}"])
    keep = ([schema.ID_COLUMN] if schema.ID_COLUMN in raw.columns else []) + wanted
    frame = raw[keep].copy()
    errors: list[str] = []
    for feature in schema.FEATURES:
        column = frame[feature.name]
        if isinstance(feature, schema.NumericFeature):
            if pd.api.types.is_numeric_dtype(column):  # already typed (the outcomes engine's frames)
                values = column.astype(float)
            else:
                text = column.astype(str).str.strip()
                if feature.name == "TotalCharges":
                    text = text.mask(text == "", "0")
                values = pd.to_numeric(text, errors="coerce")
            bad_type = values.isna()
            bad_range = ~bad_type & ((values < feature.minimum) | (values > feature.maximum))
            if feature.dtype is int:
                bad_type |= ~bad_type & (values % 1 != 0)
            for index in column.index[bad_type]:
                errors.append(
                    f"{_row_label(frame, index)}, column {feature.name!r}: "
                    f"not a {feature.dtype.__name__}: {column[index]!r}"
                )
            for index in column.index[bad_range]:
                errors.append(
                    f"{_row_label(frame, index)}, column {feature.name!r}: {column[index]!r} is "
                    f"outside the valid range [{feature.minimum:g}, {feature.maximum:g}]"
                )
            frame[feature.name] = values.astype(feature.dtype) if not bad_type.any() else values
        else:
            frame[feature.name] = _categorical(frame, feature, errors)
    if require_target:
        target = frame[schema.TARGET].astype(str).str.strip()
        for index in target.index[~target.isin(schema.TARGET_CLASSES)]:
            errors.append(
                f"{_row_label(frame, index)}, column {schema.TARGET!r}: "
                f"{target[index]!r} is not one of {list(schema.TARGET_CLASSES)}"
            )
        frame[schema.TARGET] = target
    if errors:
        raise DataValidationError(errors[:MAX_REPORTED_ERRORS], total=len(errors))
    return frame.reset_index(drop=True)


def _categorical(frame: pd.DataFrame, feature: schema.CategoricalFeature, errors: list[str]) -> pd.Series:
    column = frame[feature.name]
    if all(isinstance(c, int) for c in feature.categories):
        values = pd.to_numeric(column, errors="coerce")
        bad = ~values.isin(feature.categories)
        values = values.where(~bad, 0).astype(int)
    else:
        values = column.astype(str)
        bad = ~values.isin(feature.categories)
        if bad.any():  # strip only what does not match as it is (stripping every value is the slow part)
            values = values.where(~bad, values[bad].str.strip())
            bad = ~values.isin(feature.categories)
    for index in column.index[bad]:
        errors.append(
            f"{_row_label(frame, index)}, column {feature.name!r}: unknown category "
            f"{column[index]!r}; allowed: {list(feature.categories)}"
        )
    return values


def load_dataset(source: str | Path | None = None, project: str = "churnflow-local") -> pd.DataFrame:
    """Read and clean a churn dataset (see `read_raw` for the sources)."""
    return clean(read_raw(source, project))


def target(frame: pd.DataFrame) -> pd.Series:
    """The binary target: 1 for churned customers."""
    return (frame[schema.TARGET] == schema.TARGET_POSITIVE).astype(int)


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the rows' features and target in a canonical CSV form: same rows, same fingerprint."""
    columns = list(schema.FEATURE_NAMES) + ([schema.TARGET] if schema.TARGET in frame.columns else [])
    canonical = frame[columns].to_csv(index=False, float_format="%.6f", lineterminator="\n")
    return hashlib.sha256(canonical.encode()).hexdigest()
