"""XGBoost: Boosters saved as JSON / UBJSON (``model.json``, ``model.ubj``, ``model.bst``) and
scikit-learn-API models (``XGBClassifier`` / ``XGBRegressor``) pickled with joblib or pickle.

``XGBoostServer`` is the component; the rest of the package is private, one module a concern:
``_loading`` (which file, which format; ``_saved_version`` reads the version a file records),
``_description`` (what the booster says of itself), ``_methods`` (the ``method`` parameter's
callables), ``_native`` (the single-row fast path through XGBoost's C API, and its fallback) and
``_tree_walk`` (small requests walked in Python where that equals XGBoost). Request rows and
threads are the base's (``modelshelf.inputs.RowReader``, ``modelshelf.openmp``).
"""

from modelshelf.frameworks.xgboost._saved_version import saved_version, xgboost_version
from modelshelf.frameworks.xgboost._server import XGBoostServer

__all__ = [
    "XGBoostServer",
    "saved_version",
    "xgboost_version",
]
