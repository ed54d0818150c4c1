"""Session fixtures over the bundled dataset, shared by unit, data and model tests."""

import pytest

from churnflow import data, training


@pytest.fixture(scope="session")
def dataset():
    """The bundled dataset, cleaned."""
    return data.load_dataset()


@pytest.fixture(scope="session")
def training_result(dataset):
    """The baseline model trained as `churnflow train` does (split 80/20, seed 42)."""
    return training.train(dataset)
