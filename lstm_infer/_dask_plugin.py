"""The Dask worker plugin of lstm_infer/score.py: it carries the model file's bytes to
each worker and loads the model there once. A module of its own because it subclasses
distributed's WorkerPlugin, so importing it imports distributed: only score() does."""
from __future__ import annotations

import os

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from .model import Model, load


class ModelPlugin(WorkerPlugin):
    """Registered once per scoring job; `worker_model(name)` finds the loaded model."""

    def __init__(self, data: bytes, digest: str):
        self.data, self.digest = data, digest
        self.model: Model | None = None

    @property
    def name(self) -> str:
        return f"lstm-infer-model-{self.digest[:16]}"

    def setup(self, worker) -> None:
        path = os.path.join(worker.local_directory, f"{self.digest[:16]}.lstm")
        with open(path, "wb") as f:
            f.write(self.data)
        self.model = load(path)

    def teardown(self, worker) -> None:
        self.model = None


def worker_model(name: str) -> Model:
    """The model that plugin `name` loaded on the worker running this task."""
    return get_worker().plugins[name].model
