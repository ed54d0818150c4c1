"""What the champion is expected to reach, read from its registration tags (pure)."""

from churnflow.monitoring.champion import expected_quality
from churnflow.monitoring.models import ExpectedQuality
from churnflow.registry import tags


def test_expected_quality_comes_from_the_metric_tags():
    version_tags = {
        f"{tags.METRIC_PREFIX}roc_auc": "0.842034",
        f"{tags.METRIC_PREFIX}brier": "0.138035",
        f"{tags.METRIC_PREFIX}brier_se": "0.004100",
        f"{tags.METRIC_PREFIX}rows": "1409.000000",
        f"{tags.METRIC_PREFIX}churn_rate": "0.265436",
    }
    assert expected_quality(version_tags) == ExpectedQuality(
        roc_auc=0.842034, brier=0.138035, rows=1409, churn_rate=0.265436, brier_se=0.0041
    )


def test_missing_unreadable_or_undefined_metrics_are_no_expectation():
    found = expected_quality({f"{tags.METRIC_PREFIX}roc_auc": "nan", f"{tags.METRIC_PREFIX}brier": "oops"})
    assert found == ExpectedQuality()
