"""MLflow models: any flavor through ``mlflow.pyfunc``, plus the flavor's own model object for the
methods pyfunc does not offer (``predict_proba``, ``decision_function``, ``transform``).

The MLmodel signature decides the input form (``xtype=auto``: a DataFrame in the signature's
column order when it names columns, else an array) and names the outputs; without a signature, a
model fitted on a DataFrame (``feature_names_in_``, read at load) gets one in its fitted columns,
as ``mlflow models serve`` gives it a DataFrame. Metadata comes from the MLmodel file without
loading the model. The model's own packages are installed beforehand by the
environment builder (``before-run``); ``servers/mlflowserver/MLFlowServer.py`` activates that
folder before this package is imported.

Start-up: ``MLFlowServer()`` runs in seldon-core's parent process, before it forks the REST
workers and the gRPC child, and imports there what loading will need (MLflow, a local model's
scikit-learn), once for all of them. An sklearn-flavor pickle without signature needs nothing of
MLflow and is served without importing it.

Per request: an sklearn-flavor model's methods are called directly (pyfunc's ``predict_fn``),
behind MLflow's own signature check when the model has a signature; other flavors go through
``pyfunc.predict``.

``MLFlowServer`` is the component; the rest of the package is private, one module a concern:
``_startup`` (imports before the fork, whether MLflow is needed, the model's requirements),
``_loading`` (pyfunc and the flavor's own model), ``_methods`` (the callables that serve),
``_signature`` (MLflow's schema check and its shortcut), ``_description`` (metadata from the
MLmodel file) and ``_rows`` (request payloads and results). ``predict`` is the base's;
``MLFlowServer.read_request`` reads the request by the signature and takes the params."""

from modelshelf.frameworks.mlflow._server import METHODS, XTYPES, MLFlowServer
from modelshelf.frameworks.mlflow._startup import ModelEnvironmentWarning, import_mlflow_before_fork

__all__ = [
    "METHODS",
    "XTYPES",
    "MLFlowServer",
    "ModelEnvironmentWarning",
    "import_mlflow_before_fork",
]
