"""ROUTER: child 0 for an even first value, 1 for odd; feedback rewards are counted."""

import numpy as np


class EvenOddRouter:
    def __init__(self) -> None:
        self.rewards = 0.0

    def route(self, X, features_names=None):
        first = np.asarray(X).ravel()[0]
        return int(first) % 2

    def send_feedback(self, features, feature_names, reward, truth, routing=None):
        self.rewards += reward
        return [[self.rewards]]

    def metrics(self):
        return [{"type": "GAUGE", "key": "router_rewards", "value": self.rewards}]
