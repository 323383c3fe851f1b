"""COMBINER: the element-wise mean of its children's outputs, which must be finite numbers
(scikit-learn's own check refuses NaN and infinities, as a model would)."""

import numpy as np
from sklearn.utils import check_array


class FiniteMeanCombiner:
    def aggregate(self, features_list, feature_names_list=None):
        return np.mean([check_array(np.asarray(f, dtype=float)) for f in features_list], axis=0)
