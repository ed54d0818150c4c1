"""Session fixtures over the bundled dataset, shared by unit, data and model tests."""

import pytest

from churnflow.training import data, pipeline


@pytest.fixture(scope="session")
def dataset():
    """The bundled dataset, cleaned."""
    return data.load_dataset()


@pytest.fixture(scope="session")
def training_result(dataset):
    """The baseline model trained as `churnflow train` does (split 80/20, seed 42)."""
    return pipeline.train(dataset)


@pytest.fixture(scope="session")
def champion(local_stack, dataset):
    """Version 1 of model `churn`, trained as `churnflow train` does and aliased champion on the session stack."""
    from churnflow.settings import TrainSettings
    from churnflow.training.register import run_training

    with pytest.MonkeyPatch.context() as patch:
        for name, value in local_stack.env().items():
            patch.setenv(name, value)
        return run_training(TrainSettings(), frame=dataset)
