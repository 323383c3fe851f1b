"""The pre- and post-processing that ``MyIrisServer`` and ``MyMLflowIrisServer`` add to our
servers: written once, mixed into either by subclassing, none of the servers' code copied."""

from __future__ import annotations

import threading
from typing import Any

from modelshelf.errors import ConfigurationError
from modelshelf.inputs import as_2d_numbers

#: Millimetres or centimetres per centimetre: the model was trained on centimetres.
UNITS = {"cm": 1.0, "mm": 10.0}
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


class IrisSteps:
    """Iris measurements in ``input_unit`` in; one label per row out, its probability in the
    response's ``meta.tags`` (one row of mixed strings and numbers would reach gRPC clients as
    strings only: seldon-core makes one numpy array of it).

    Put it first among the bases, before one of our servers: ``super()`` is that server.
    """

    def __init__(
        self, model_uri: str, input_unit: str = "cm", min_confidence: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(model_uri, **kwargs)  # the server's own parameters
        if input_unit not in UNITS:
            raise ConfigurationError("input_unit", input_unit, "one of " + ", ".join(UNITS))
        self.input_unit = input_unit
        self.min_confidence = float(min_confidence)
        self._request = threading.local()  # what this thread's last request produced

    def transform_input(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        """Pre-processing: four measurements per row, converted to centimetres."""
        rows = as_2d_numbers(X, 4, "the measurements")
        self._request.names = FEATURES
        return rows / UNITS[self.input_unit]

    def transform_output(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        """Post-processing: class probabilities -> the most likely label (probability in tags)."""
        classes = self.method.output_names if self.method else None
        probabilities = as_2d_numbers(X, len(classes) if classes else None, "the probabilities")
        best = probabilities.argmax(axis=1)
        confidence = probabilities.max(axis=1)
        labels = [classes[i] if classes else str(i) for i in best]
        self._request.labels = labels
        self._request.low_confidence = int((confidence < self.min_confidence).sum())
        self._request.names = ["label"]
        self._request.probability = confidence.tolist()
        return [[label] for label in labels]

    def predict(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        """pre -> the server's own predict -> post."""
        centimetres = self.transform_input(X, features_names)
        probabilities = super().predict(centimetres, None, meta)
        return self.transform_output(probabilities)

    def class_names(self) -> Any:
        names = getattr(self._request, "names", None)
        return names if names else super().class_names()

    def tags(self) -> dict[str, Any]:
        found = {"input_unit": self.input_unit, "model_uri": self.model_uri}
        probability = self._request.__dict__.pop("probability", None)
        if probability is not None:
            found["probability"] = probability
        return found

    def metrics(self) -> list[dict[str, Any]]:
        """The server's own metrics plus this example's, per request."""
        labels = self._request.__dict__.pop("labels", None) or []
        found = self.server_metrics()
        for label in sorted(set(labels)):
            found.append(
                {
                    "type": "COUNTER",
                    "key": "iris_predictions_by_label",
                    "value": labels.count(label),
                    "tags": {"label": label},
                }
            )
        low = self._request.__dict__.pop("low_confidence", 0)
        if low:
            found.append({"type": "COUNTER", "key": "iris_low_confidence", "value": low})
        return found
