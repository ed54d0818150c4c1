"""Settings sections: a policy's thresholds are read from the settings, each under its own name (pure)."""

from dataclasses import dataclass

import pytest

from churnflow.monitoring.performance_rule import PerformancePolicy
from churnflow.monitoring.policy import DriftPolicy
from churnflow.retraining.gate import GatePolicy
from churnflow.settings import MonitorSettings, RetrainSettings, section


def test_each_policy_is_a_section_of_its_settings():
    monitor = MonitorSettings(noise_factor=3.0, performance_min_labels=700, performance_segment_margin=0.04)
    assert DriftPolicy.from_settings(monitor).noise_factor == 3.0
    performance = PerformancePolicy.from_settings(monitor)
    assert (performance.min_labels, performance.segment_margin) == (700, 0.04)
    assert GatePolicy.from_settings(RetrainSettings(auc_gain=0.02, min_oot_rows=50)).auc_gain == 0.02


def test_a_field_without_a_setting_is_refused_by_name():
    @dataclass(frozen=True)
    class Thresholds:
        noise_factor: float
        no_such_setting: float

    with pytest.raises(AttributeError, match="no_such_setting"):
        section(MonitorSettings(), Thresholds)
