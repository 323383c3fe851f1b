"""COMBINER: the element-wise mean of its children's outputs."""

import numpy as np


class MeanCombiner:
    def aggregate(self, features_list, feature_names_list=None):
        return np.mean([np.asarray(f, dtype=float) for f in features_list], axis=0)
