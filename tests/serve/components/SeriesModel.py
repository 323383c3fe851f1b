"""MODEL whose every request adds a metrics series: a counter tagged with the request's number
(an open-ended tag value, as a model tagging by user or item id does)."""


class SeriesModel:
    def __init__(self) -> None:
        self.requests = 0

    def predict(self, X, features_names=None, meta=None):
        self.requests += 1
        return X

    def metrics(self):
        return [
            {
                "type": "COUNTER",
                "key": "series_requests",
                "value": 1,
                "tags": {"n": str(self.requests)},
            }
        ]
