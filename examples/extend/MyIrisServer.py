"""Extending a modelshelf server by subclassing: pre-processing, post-processing, extra metrics
and tags (``iris_steps.IrisSteps``) on top of ``SKLearnServer``, without copying any of its code.

``predict`` runs pre -> model -> post in this one container, so no inference graph is needed;
``/transform-input`` and ``/transform-output`` also serve each step on its own. Everything else --
download, load once, metadata, health, 400s for bad input, the server's own metrics -- is
inherited. Run it like any of our servers, from this folder::

    seldon-core-microservice MyIrisServer --parameters \\
      '[{"name":"model_uri","value":"/path/to/iris","type":"STRING"},
        {"name":"input_unit","value":"mm","type":"STRING"}]'
"""

from __future__ import annotations

from iris_steps import IrisSteps

from modelshelf.frameworks.sklearn import SKLearnServer


class MyIrisServer(IrisSteps, SKLearnServer):
    """``SKLearnServer`` with millimetres in and labels out (parameters ``input_unit``,
    ``min_confidence``, and SKLearnServer's own: ``model_uri``, ``method``, ``model_file``)."""
