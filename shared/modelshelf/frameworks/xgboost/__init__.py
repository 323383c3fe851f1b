"""XGBoost: Boosters saved as JSON / UBJSON (``model.json``, ``model.ubj``, ``model.bst``) and
scikit-learn-API models (``XGBClassifier`` / ``XGBRegressor``) pickled with joblib or pickle.

``XGBoostServer`` is the component; the rest of the package is private, one module a concern:
``_loading`` (which file, which format; ``_saved_version`` reads the version a file records),
``_description`` (what the booster says of itself) and ``_methods`` (the ``method`` parameter's
callables). Request rows, threads and accelerators are the base's (``modelshelf.inputs``,
``modelshelf.openmp``, ``modelshelf.accelerators``); a model's stored categories are read by
``_description`` and requests for it by ``modelshelf.category_inputs``.
"""

from modelshelf.frameworks.xgboost._saved_version import saved_version, xgboost_version
from modelshelf.frameworks.xgboost._server import XGBoostServer

__all__ = [
    "XGBoostServer",
    "saved_version",
    "xgboost_version",
]
