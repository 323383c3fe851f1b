"""An epsilon-greedy bandit router that learns from ``/send-feedback`` (``MODEL_NAME=MyRouter``).

``route`` picks the child with the best mean reward so far, or a random one with probability
``epsilon``; ``send_feedback`` credits the reward to the child the request was routed to. With
``PERSISTENCE=1`` what it learned is saved to Redis and survives a restart.
"""

import random
import threading


class MyRouter:
    def __init__(self, n_branches: int = 2, epsilon: float = 0.1, seed: int = 0) -> None:
        if int(n_branches) < 1 or not 0 <= float(epsilon) <= 1:
            raise ValueError(
                f"need n_branches >= 1 and 0 <= epsilon <= 1, got {n_branches}, {epsilon}"
            )
        self.n_branches = int(n_branches)
        self.epsilon = float(epsilon)
        self.pulls = [0] * self.n_branches
        self.rewards = [0.0] * self.n_branches
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def route(self, X, features_names=None, **kwargs) -> int:
        with self._lock:
            if self._random.random() < self.epsilon:
                return self._random.randrange(self.n_branches)
            means = [r / p if p else 0.0 for r, p in zip(self.rewards, self.pulls, strict=True)]
            return max(range(self.n_branches), key=means.__getitem__)

    def send_feedback(self, X, features_names, reward, truth, routing=None):
        if routing is None or not 0 <= int(routing) < self.n_branches:
            raise ValueError(f"feedback must name the branch it rewards (0..{self.n_branches - 1})")
        with self._lock:
            self.pulls[int(routing)] += 1
            self.rewards[int(routing)] += float(reward)
        return []

    def metrics(self):
        with self._lock:
            pulls = list(self.pulls)
        return [
            {"type": "GAUGE", "key": "myrouter_feedback", "value": n, "tags": {"branch": str(i)}}
            for i, n in enumerate(pulls)
        ]

    # What PERSISTENCE=1 saves: a copy taken under the lock (pickled later, outside it).
    def __getstate__(self):
        with self._lock:
            return {"pulls": list(self.pulls), "rewards": list(self.rewards)}

    def __setstate__(self, state):
        if "_lock" not in self.__dict__:  # unpickled afresh rather than restored in place
            self.__init__(n_branches=len(state["pulls"]), epsilon=0.1)
        with self._lock:
            self.pulls, self.rewards = list(state["pulls"]), list(state["rewards"])
