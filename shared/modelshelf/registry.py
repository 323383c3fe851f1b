"""modelshelf's servers, listed once: everything that names them is derived from this list --
``graph/manifest.py``'s tables, ``images/build.sh``'s images and their build arguments,
``images/constraints.py``'s extras, the seldon-config patch and Helm values under ``manifests/``,
the README's table of servers (``python3 shared/modelshelf/registry.py write`` rewrites the files;
a test checks they match) and the KServe runtimes under ``manifests/kserve/``
(``graph/kserve_runtimes.py``, which needs PyYAML: ``python -m modelshelf.graph.kserve_runtimes
manifests/kserve``).

Plain Python without imports from modelshelf, so ``images/build.sh`` runs it with any python3.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Server:
    """One server: where it lives, what it installs, and how Seldon and KServe name it."""

    name: str  #: ``servers/<name>`` and the image ``modelshelf/<name>``
    title: str  #: the framework, as the README's table says it
    class_name: str  #: the component seldon-core-microservice / modelshelf serve import
    module: str  #: where the class lives
    extra: str  #: the pyproject extra with its framework
    framework_packages: tuple[str, ...]
    seldon_implementation: str  #: SeldonDeployment ``implementation``
    mlserver_v2_version: str | None  #: the ``v2`` protocol's MLServer image tag upstream
    kserve_model_formats: tuple[str, ...]  #: the runtime's ``supportedModelFormats`` names
    #: the versions of each of those formats the runtime lists (an InferenceService's
    #: ``modelFormat.version`` must be one of them when it names one)
    kserve_format_versions: tuple[str, ...]
    kserve_description: str  #: what the KServe runtime serves, for its manifests' comments
    description: str  #: the image's description label
    folder_note: str = ""  #: after the folder in the README's table
    system_packages: str = ""  #: Debian packages the image needs (apt-get install)
    #: (name, value) pairs the KServe runtime's container env adds: KServe's own runtime's
    #: defaults, so an InferenceService's env changes them as it does on KServe's runtime
    kserve_env: tuple[tuple[str, str], ...] = ()


SERVERS: tuple[Server, ...] = (
    Server(
        name="sklearnserver",
        title="scikit-learn",
        class_name="SKLearnServer",
        module="modelshelf.frameworks.sklearn",
        extra="sklearn",
        framework_packages=("scikit-learn",),
        seldon_implementation="SKLEARN_SERVER",
        mlserver_v2_version="1.3.5-sklearn",
        kserve_model_formats=("sklearn",),
        kserve_format_versions=("1",),
        kserve_description="scikit-learn pickles and joblib files (SKLearnServer)",
        # KServe's sklearnserver answers labels unless PREDICT_PROBA is "true"; unset, ours
        # would answer Seldon's default, probabilities, to the InferenceServices it takes over
        kserve_env=(("PREDICT_PROBA", "false"),),
        description="scikit-learn model server for Seldon Core (SKLearnServer, Seldon protocol)",
    ),
    Server(
        name="mlflowserver",
        title="MLflow",
        class_name="MLFlowServer",
        module="modelshelf.frameworks.mlflow",
        extra="mlflow",
        framework_packages=("mlflow-skinny",),
        seldon_implementation="MLFLOW_SERVER",
        mlserver_v2_version="1.3.5-mlflow",
        kserve_model_formats=("mlflow",),
        kserve_format_versions=("1", "2", "3"),
        kserve_description="MLflow models (pyfunc), the model's requirements installed at start",
        description="MLflow model server for Seldon Core (MLFlowServer on mlflow-skinny; "
        "before-run installs the model's requirements into MODELSHELF_ENV_DIR)",
        folder_note=" (run `./before-run` first)",
    ),
    Server(
        name="xgboostserver",
        title="XGBoost",
        class_name="XGBoostServer",
        module="modelshelf.frameworks.xgboost",
        extra="xgboost",
        framework_packages=("xgboost-cpu",),
        seldon_implementation="XGBOOST_SERVER",
        mlserver_v2_version="1.3.5-xgboost",
        kserve_model_formats=("xgboost",),
        kserve_format_versions=("1", "2", "3"),
        kserve_description="XGBoost boosters (model.json/.ubj/.bst) and pickled "
        "XGBClassifier/XGBRegressor",
        description="XGBoost model server for Seldon Core (XGBoostServer: boosters and "
        "scikit-learn-API pickles, Seldon protocol)",
    ),
    Server(
        name="lightgbmserver",
        title="LightGBM",
        class_name="LightGBMServer",
        module="modelshelf.frameworks.lightgbm",
        extra="lightgbm",
        framework_packages=("lightgbm",),
        seldon_implementation="LIGHTGBM_SERVER",
        mlserver_v2_version="1.3.5-lightgbm",
        kserve_model_formats=("lightgbm",),
        kserve_format_versions=("3", "4"),
        kserve_description="LightGBM boosters (model.txt/.bst) and pickled "
        "LGBMClassifier/LGBMRegressor (LightGBMServer)",
        description="LightGBM model server for Seldon Core (LightGBMServer: boosters and "
        "scikit-learn-API pickles, Seldon protocol)",
        system_packages="libgomp1",  # lightgbm's wheel links the system's OpenMP runtime
    ),
)

#: Images that run a registered server's class but are built their own way.
VARIANTS: dict[str, str] = {"mlflowserver-conda": "mlflowserver"}
VERSION = "0.1.0"

#: seldon-core 1.18.2's other predictor servers, repeated unchanged in the seldon-config patch
#: (``predictor_servers`` is one JSON value: a patch replaces the whole list).
UPSTREAM_PREDICTOR_SERVERS = """\
      "TENSORFLOW_SERVER": {"protocols": {
        "seldon": {"image": "seldonio/tfserving-proxy", "defaultImageVersion": "1.18.2"},
        "tensorflow": {"image": "tensorflow/serving", "defaultImageVersion": "2.1.0"}}},
      "TRITON_SERVER": {"protocols": {
        "v2": {"image": "nvcr.io/nvidia/tritonserver", "defaultImageVersion": "21.08-py3"}}},
      "HUGGINGFACE_SERVER": {"protocols": {
        "v2": {"image": "seldonio/mlserver", "defaultImageVersion": "1.3.5-huggingface"}}},
      "TEMPO_SERVER": {"protocols": {
        "v2": {"image": "seldonio/mlserver", "defaultImageVersion": "1.3.5-slim"}}}"""


def by_name(name: str) -> Server:
    for server in SERVERS:
        if server.name == name:
            return server
    raise KeyError(f"no server {name!r}; registered: {', '.join(s.name for s in SERVERS)}")


def image(server: Server) -> str:
    return f"modelshelf/{server.name}:{VERSION}"


# ------------------------------------------------------------------------ generated files


def seldon_config_patch() -> str:
    """``manifests/seldon/seldon-config-predictor-servers-patch.yaml``."""
    ours = []
    for s in SERVERS:
        v2 = (
            f',\n        "v2": {{"image": "seldonio/mlserver", '
            f'"defaultImageVersion": "{s.mlserver_v2_version}"}}'
            if s.mlserver_v2_version
            else ""
        )
        ours.append(
            f'      "{s.seldon_implementation}": {{"protocols": {{\n'
            f'        "seldon": {{"image": "modelshelf/{s.name}", '
            f'"defaultImageVersion": "{VERSION}"}}{v2}}}}},'
        )
    names = ", ".join(s.seldon_implementation for s in SERVERS)
    return f"""\
# Generated from shared/modelshelf/registry.py (python3 shared/modelshelf/registry.py write).
# modelshelf's images serve implementation: {names}
# (protocol "seldon"), so existing SeldonDeployments keep working unchanged (v2 stays on MLServer).
# The operator reads the ConfigMap "seldon-config" in its own namespace when it builds a pod; an
# implementation it does not know upstream (LIGHTGBM_SERVER) is a custom prepackaged server.
#
# predictor_servers is one JSON value: patching it replaces the whole list, so every upstream
# entry of seldon-core 1.18.2 is repeated here unchanged, and only our "seldon" images differ.
# Merge it into the existing ConfigMap (other keys stay as they are):
#   kubectl patch configmap seldon-config -n seldon-system --type merge \\
#     --patch-file manifests/seldon/seldon-config-predictor-servers-patch.yaml
# With Helm, set the same under the chart's predictor_servers value instead
# (manifests/helm/seldon-core-operator-values.yaml). Pods that exist keep their image until
# they are recreated.
apiVersion: v1
kind: ConfigMap
metadata:
  name: seldon-config
  namespace: seldon-system
data:
  predictor_servers: |-
    {{
{chr(10).join(ours)}
{UPSTREAM_PREDICTOR_SERVERS}
    }}
  storageInitializer: |-
    {{"image": "modelshelf/storage-initializer:{VERSION}", "memoryRequest": "100Mi",
     "memoryLimit": "1Gi", "cpuRequest": "100m", "cpuLimit": "1"}}
"""


def helm_values() -> str:
    """``manifests/helm/seldon-core-operator-values.yaml``."""
    entries = "".join(
        f"  {s.seldon_implementation}:\n    protocols:\n      seldon:\n"
        f'        image: modelshelf/{s.name}\n        defaultImageVersion: "{VERSION}"\n'
        for s in SERVERS
    )
    names = ", ".join(s.seldon_implementation for s in SERVERS)
    return f"""\
# Generated from shared/modelshelf/registry.py (python3 shared/modelshelf/registry.py write).
# Helm values for the seldon-core-operator chart (1.18.2): modelshelf's images serve
# {names}, with our storage initializer:
#   helm upgrade --install seldon-core seldon-core-operator \\
#     --repo https://storage.googleapis.com/seldon-charts --version 1.18.2 -n seldon-system \\
#     --reuse-values -f manifests/helm/seldon-core-operator-values.yaml
# Helm replaces a map value key by key, so only these servers change.
predictor_servers:
{entries}storageInitializer:
  image: modelshelf/storage-initializer:{VERSION}
"""


def readme_table() -> str:
    """The README's table of servers (between its ``servers table`` markers)."""
    rows = [
        f"| {s.title} | `servers/{s.name}`{s.folder_note} | `{s.class_name}` | `{s.extra}` |"
        for s in SERVERS
    ]
    rows.append(
        "| MLflow, conda variant | `servers/mlflowserver-conda` (`./run`) | `MLFlowServer` | "
        "`mlflow` |"
    )
    return "| server | folder | class | extra |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


README_BEGIN = "<!-- servers table: generated from shared/modelshelf/registry.py -->\n"
README_END = "<!-- end of servers table -->\n"

GENERATED: dict[str, Callable[[], str]] = {
    "manifests/seldon/seldon-config-predictor-servers-patch.yaml": seldon_config_patch,
    "manifests/helm/seldon-core-operator-values.yaml": helm_values,
}


def with_readme_table(readme: str) -> str:
    """``readme`` with the text between the markers replaced by ``readme_table()``."""
    head, rest = readme.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return head + README_BEGIN + readme_table() + README_END + tail


def write(repo: Path) -> None:
    for relative, render in GENERATED.items():
        (repo / relative).write_text(render())
    readme = repo / "README.md"
    readme.write_text(with_readme_table(readme.read_text()))


def _main(argv: list[str]) -> int:
    """``images``: the server images' names; ``build-args NAME``: that image's build
    arguments (one a line); ``write``: rewrite the generated files under the repository."""
    command = argv[0] if argv else ""
    if command == "images":
        print(" ".join(s.name for s in SERVERS))
    elif command == "build-args" and len(argv) == 2:
        try:
            s = by_name(argv[1])
        except KeyError as exc:
            print(f"registry.py: {exc.args[0]}", file=sys.stderr)
            return 1
        for key, value in (
            ("SERVER", s.name),
            ("EXTRA", s.extra),
            ("MODEL_NAME", s.class_name),
            ("DESCRIPTION", s.description),
            ("SYSTEM_PACKAGES", s.system_packages),
        ):
            print(f"{key}={value}")
    elif command == "write":
        write(Path(__file__).resolve().parents[2])
    else:
        print("usage: registry.py images | build-args NAME | write", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
