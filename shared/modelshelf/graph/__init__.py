"""SeldonDeployment manifests: validation against the real CRD schemas, and running a predictor
graph on one machine (``modelshelf graph validate`` / ``modelshelf graph run``).

``crd`` checks a manifest the way the Kubernetes API server checks a custom resource;
``manifest`` reads a predictor graph and applies the operator's admission rules;
``supervisor`` starts one server process per graph node; ``frontdoor`` walks the graph per request
as Seldon's executor does.
"""
