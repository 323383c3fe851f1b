"""The one-hot pipeline accelerator on real scikit-learn pipelines: the matrix it builds is
``ColumnTransformer.transform``'s bit for bit (dense and sparse, passthrough and dropped
columns), the pipeline's answers are scikit-learn's on every request frame, each refusal is
scikit-learn's own (unknown categories under every ``handle_unknown``, None / NaN / numbers
where text was learnt, ±inf and text where numbers were learnt, missing or extra columns), the
options it does not reproduce get no candidate, and a real ``modelshelf serve`` process serves
it over Seldon ``names`` + rows and V2 ``content_type: pd``."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

import models
from microservice import SERVERS, seldon_parameters
from modelshelf.accelerators import Accelerated, accelerate
from modelshelf.accelerators.sklearn_column_transformer import (
    _column_reader,
    candidate,
    matrix_builder,
)
from modelshelf.accelerators.verify import same_output
from modelshelf.frameworks.sklearn import SKLearnServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from frontends import MODELSHELF, Launch, running

CITIES = ["paris", "lyon", "nice", "lille", "nantes", "rennes", "brest"]
KINDS = ["flat", "house", "studio"]
#: Many categories: one-hot output under the default ``sparse_threshold`` (a sparse matrix).
CODES = [f"code-{i:02d}" for i in range(40)]


def table(rows: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "city": np.array(CITIES, dtype=object)[rng.integers(len(CITIES), size=rows)],
            "kind": np.array(KINDS, dtype=object)[rng.integers(len(KINDS), size=rows)],
            "code": np.array(CODES, dtype=object)[rng.integers(len(CODES), size=rows)],
            "rooms": rng.integers(1, 7, size=rows),
            "area": np.round(rng.uniform(15, 200, size=rows), 1),
        }
    )


TRAIN = table(600)
CLASSES = ((TRAIN["area"] / TRAIN["rooms"] > 35) + (TRAIN["city"] == "paris")).to_numpy()
PRICE = (TRAIN["area"] * 3.5 + TRAIN["rooms"]).to_numpy()


def pipeline(columns: ColumnTransformer, final=None, target=CLASSES) -> Pipeline:
    final = LogisticRegression(max_iter=500) if final is None else final
    return Pipeline([("columns", columns), ("final", final)]).fit(TRAIN, target)


PIPELINES = {
    "dense, logistic (the realistic bench's)": pipeline(
        ColumnTransformer(
            [
                ("categories", OneHotEncoder(handle_unknown="ignore"), ["city", "kind"]),
                ("numbers", StandardScaler(), ["rooms", "area"]),
            ]
        )
    ),
    "sparse, logistic over 3 classes, error on unknown": pipeline(
        ColumnTransformer(
            [
                ("categories", OneHotEncoder(), ["city", "kind", "code"]),
                ("numbers", StandardScaler(with_mean=False), ["area"]),
            ],
            remainder="passthrough",
        ),
        target=CLASSES + (TRAIN["kind"] == "flat").to_numpy(),
    ),
    "dense encoder, passthrough, ridge": pipeline(
        ColumnTransformer(
            [
                ("categories", OneHotEncoder(sparse_output=False), [0, 2]),
                ("kept", "passthrough", ["rooms"]),
                ("unused", "drop", ["kind"]),
            ],
            remainder=StandardScaler(),
        ),
        Ridge(),
        PRICE,
    ),
    "infrequent_if_exist, forest": pipeline(
        ColumnTransformer(
            [
                ("categories", OneHotEncoder(handle_unknown="infrequent_if_exist"), ["kind"]),
                ("numbers", StandardScaler(with_std=False), ["area", "rooms"]),
            ],
            sparse_threshold=0.0,
        ),
        RandomForestRegressor(5, random_state=0),
        PRICE,
    ),
}
METHODS = {"predict_proba", "predict", "decision_function"}


def requests() -> list[pd.DataFrame]:
    """Frames as clients' requests become: covered ones, and each value or shape the fast path
    leaves to scikit-learn."""
    found = [table(1, 10), table(7, 11), table(300, 12), table(1, 13).astype({"rooms": "float64"})]
    for column, bad in [
        ("city", "atlantis"), ("code", "code-99"), ("kind", None), ("city", np.nan),
        ("kind", 3), ("area", np.nan), ("area", np.inf), ("rooms", -np.inf), ("area", "12"),
        ("area", None), ("area", 1e308), ("kind", ["flat"]), ("city", {"x": 1}),
    ]:  # fmt: skip
        frame = table(5, 14)
        values = frame[column].tolist()
        values[2] = bad
        frame[column] = pd.Series(values)
        found.append(frame)
    base = table(4, 15)
    found += [base[base.columns[::-1]], base.drop(columns="area"), base.assign(extra=1.0)]
    found += [base.astype({"area": "float32"}), base.astype({"city": "string"})]
    # Other forms decoders and clients give: numpy's str_ in an object column, -0.0 and
    # subnormals, integers past 2**53, a non-default index (served); bool, int32, nullable
    # and object numbers, categories, bytes and booleans where text was learnt (scikit-learn's).
    city = base["city"].to_numpy()
    found += [
        base.assign(city=np.array([np.str_(c) for c in city], dtype=object)),
        base.assign(area=[-0.0, 0.0, 5e-324, -5e-324]),
        base.assign(rooms=np.array([2**62, -(2**63), 2**53 + 1, 3])),
        base.set_index(pd.Index([10, 3, 7, 1])),
        base.assign(rooms=np.array([True, False, True, True])),
        base.astype({"rooms": "int32"}),
        base.astype({"rooms": "Int64"}),
        base.astype({"area": object}),
        base.astype({"city": "category"}),
        base.assign(city=np.array([c.encode() for c in city], dtype=object)),
        base.assign(city=np.array([True, *city[1:]], dtype=object)),
    ]
    found += [base.to_numpy(), base.iloc[:0]]
    return found


def outcome(call, X):
    try:
        return "ok", call(X)
    except Exception as exc:
        return type(exc), str(exc)


def assert_same(got, want) -> None:
    if want[0] == "ok":
        assert got[0] == "ok", got
        assert same_output(got[1], want[1]) is None, same_output(got[1], want[1])
    else:
        assert got == want


def assert_same_matrix(got, want) -> None:
    """``got`` is ``want`` bit for bit: the same type, and a CSR matrix's three arrays."""
    assert type(got) is type(want)
    if sp.issparse(want):
        for part in ("data", "indices", "indptr"):
            assert same_output(getattr(got, part), getattr(want, part)) is None, part
    else:
        assert same_output(got, want) is None


@pytest.mark.parametrize("label", PIPELINES)
def test_the_built_matrix_is_the_column_transformer_s(label):
    transformer = PIPELINES[label].steps[0][1]
    build = matrix_builder(transformer)
    assert build is not None
    for X in requests()[:4]:
        got, want = build(X), transformer.transform(X)
        assert_same_matrix(got, want)
        assert sp.issparse(want) == label.startswith("sparse")
        if not sp.issparse(want):
            assert got.flags.c_contiguous == want.flags.c_contiguous


def test_columns_read_without_pandas_private_accessor_are_the_same():
    """The public fallback (a Series per column) of ``_column_reader`` for a pandas without
    ``DataFrame._get_column_array``: the same arrays."""
    frame = table(6, 30)
    names = frame.columns.tolist()
    private = _column_reader(pd.DataFrame, names)(frame)
    public = _column_reader(object, names)(frame)  # a frame type without the accessor
    assert len(public) == len(private) == len(names)
    for got, want in zip(public, private, strict=True):
        assert type(got) is np.ndarray and got.dtype == want.dtype
        assert same_output(got, want) is None


@pytest.mark.parametrize("label", PIPELINES)
def test_answers_and_refusals_are_scikit_learn_s(label):
    model = PIPELINES[label]
    for method in sorted(METHODS & set(dir(model.steps[-1][1]))):
        fast = accelerate(model, method, getattr(model, method))
        assert isinstance(fast, Accelerated), (label, method)
        for X in requests():
            with np.errstate(all="ignore"):
                got, want = outcome(fast, X), outcome(getattr(model, method), X)
            assert_same(got, want)


def test_unknown_categories_are_refused_as_scikit_learn_refuses_them():
    """Under ``handle_unknown="error"`` an unknown category is scikit-learn's ValueError (a
    400 once served); under ``ignore`` and ``infrequent_if_exist`` its row of zeros."""
    unknown = table(3, 20)
    unknown.loc[1, "city"] = "atlantis"
    for handle_unknown in ("error", "ignore", "infrequent_if_exist"):
        model = pipeline(
            ColumnTransformer(
                [
                    ("categories", OneHotEncoder(handle_unknown=handle_unknown), ["city"]),
                    ("numbers", StandardScaler(), ["rooms", "area"]),
                ]
            )
        )
        fast = accelerate(model, "predict_proba", model.predict_proba)
        assert isinstance(fast, Accelerated)
        got, want = outcome(fast, unknown), outcome(model.predict_proba, unknown)
        assert_same(got, want)
        assert (want[0] is ValueError) == (handle_unknown == "error"), want


def with_encoder(**options) -> Pipeline:
    return pipeline(
        ColumnTransformer(
            [("categories", OneHotEncoder(**options), ["city", "kind"])], remainder="drop"
        )
    )


class Shifted(StandardScaler):
    def transform(self, X, copy=None):
        return super().transform(X, copy) + 1.0


def as_frames() -> Pipeline:
    model = with_encoder(sparse_output=False)
    return model.set_output(transform="pandas")


def three_steps() -> Pipeline:
    return Pipeline(
        [
            ("columns", ColumnTransformer([("numbers", StandardScaler(), ["area"])])),
            ("again", StandardScaler()),
            ("final", LogisticRegression()),
        ]
    ).fit(TRAIN, CLASSES)


#: Pipelines it does not reproduce, and the reason its INFO line gives (the first thing).
NOT_REPRODUCED = {
    "drop": (lambda: with_encoder(drop="first"), "OneHotEncoder with drop='first'"),
    "min_frequency": (lambda: with_encoder(min_frequency=5), "with min_frequency=5"),
    "max_categories": (lambda: with_encoder(max_categories=3), "with max_categories=3"),
    "float32 encoder": (lambda: with_encoder(dtype=np.float32), "with dtype=float32"),
    "numeric categories": (
        lambda: pipeline(ColumnTransformer([("categories", OneHotEncoder(), ["rooms"])])),
        "OneHotEncoder learnt categories int64 for column 'rooms' (e.g. 1)",
    ),
    "unsupported transformer": (
        lambda: pipeline(ColumnTransformer([("scaled", MinMaxScaler(), ["area"])])),
        "transformer 'scaled': a MinMaxScaler (only OneHotEncoder",
    ),
    "subclass": (
        lambda: pipeline(ColumnTransformer([("numbers", Shifted(), ["area", "rooms"])])),
        "transformer 'numbers': a subclass of StandardScaler (Shifted)",
    ),
    "weights": (
        lambda: pipeline(
            ColumnTransformer(
                [("categories", OneHotEncoder(), ["city"]), ("numbers", "passthrough", ["area"])],
                transformer_weights={"categories": 2.0},
            )
        ),
        "the ColumnTransformer has transformer_weights",
    ),
    "slice selector": (
        lambda: pipeline(ColumnTransformer([("numbers", StandardScaler(), slice(3, 5))])),
        "transformer 'numbers' selects its columns by slice(3, 5, None) (only a list",
    ),
    "set_output": (as_frames, "the ColumnTransformer's set_output(transform='pandas')"),
    "three steps": (three_steps, "3 steps (only a ColumnTransformer then the final estimator)"),
    "no ColumnTransformer": (
        lambda: Pipeline([("scaled", StandardScaler()), ("final", LogisticRegression())]).fit(
            TRAIN[["rooms", "area"]], CLASSES
        ),
        "its first step 'scaled' is a StandardScaler, not a ColumnTransformer",
    ),
}


@pytest.mark.parametrize("label", NOT_REPRODUCED)
def test_what_it_does_not_reproduce_gets_no_candidate_and_one_line_saying_why(label, caplog):
    make, reason = NOT_REPRODUCED[label]
    model = make()
    with caplog.at_level(logging.INFO):
        assert accelerate(model, "predict_proba", model.predict_proba) is None
    said = [
        r for r in caplog.records if r.name == "modelshelf.accelerators.sklearn_column_transformer"
    ]
    assert len(said) == 1, caplog.text
    assert said[0].levelno == logging.INFO
    assert (
        said[0]
        .getMessage()
        .startswith("Pipeline.predict_proba: the ColumnTransformer fast path declines: ")
    ), said[0].getMessage()
    assert reason in said[0].getMessage()


def test_methods_it_does_not_serve_get_no_candidate_and_say_why(caplog):
    model = PIPELINES["dense, logistic (the realistic bench's)"]
    with caplog.at_level(logging.INFO):
        for method in ("transform", "score_samples"):
            assert candidate(model, method, model.predict) is None
    assert "Pipeline.transform: the ColumnTransformer fast path declines: transform is" in (
        caplog.text
    )
    assert "Pipeline.score_samples: the ColumnTransformer fast path declines" in caplog.text


def test_other_models_get_no_line_from_it(caplog):
    """Only pipelines are its to decline: another model's load log is as it was."""
    model = LogisticRegression(max_iter=500).fit(TRAIN[["rooms", "area"]], CLASSES)
    with caplog.at_level(logging.INFO):
        assert candidate(model, "predict_proba", model.predict_proba) is None
    assert caplog.records == []


@pytest.mark.parametrize(
    ("final", "says"),
    [
        (LogisticRegression(max_iter=500), "then LogisticRegression.predict_proba's fast path "
         "(the linear model's product"),
        (KNeighborsClassifier(), "then KNeighborsClassifier.predict_proba's own call"),
    ],
)  # fmt: skip
def test_one_line_says_which_path_serves(final, says, caplog):
    """The final estimator's own verdict is not logged on its own line (which read "the
    framework's own call" just before the pipeline's accelerated line): the pipeline's line
    says which call serves the matrix."""
    model = pipeline(PIPELINES["dense, logistic (the realistic bench's)"].steps[0][1], final)
    with caplog.at_level(logging.INFO):
        assert isinstance(accelerate(model, "predict_proba", model.predict_proba), Accelerated)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "Pipeline.predict_proba: the ColumnTransformer's matrix built from the frame's columns, "
    ), lines
    assert says in lines[0]
    assert "bit-identical on" in lines[0]


SERVED = pipeline(
    ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="error"), ["city", "kind"]),
            ("numbers", StandardScaler(), ["rooms", "area"]),
        ]
    )
)
NAMES = ["city", "kind", "code", "rooms", "area"]


def v2_body(frame: pd.DataFrame) -> dict:
    kinds = {"city": "BYTES", "kind": "BYTES", "code": "BYTES", "rooms": "INT64", "area": "FP64"}
    return {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": n, "shape": [len(frame)], "datatype": kinds[n], "data": frame[n].tolist()}
            for n in NAMES
        ],
    }


def test_the_server_serves_it_and_says_so(tmp_path):
    folder = models.save(SERVED, tmp_path / "pipeline")
    on = SKLearnServer(str(folder))
    on.load()
    assert isinstance(on.method.call, Accelerated)
    assert "ColumnTransformer's matrix" in on.init_metadata()["custom"]["fast path"]
    rows = table(9, 30)
    np.testing.assert_array_equal(
        on.predict(rows[NAMES].to_numpy().astype(str), NAMES), SERVED.predict_proba(rows)
    )
    records = rows[NAMES].to_dict("records")  # jsonData: records, then columns
    np.testing.assert_array_equal(on.predict(records, []), SERVED.predict_proba(rows))
    by_column = rows[NAMES].to_dict("list")
    np.testing.assert_array_equal(on.predict(by_column, []), SERVED.predict_proba(rows))


@pytest.mark.parametrize("fast_path", ["true", "false"])
def test_modelshelf_serve_answers_scikit_learn_s_numbers(tmp_path, fast_path):
    folder = models.save(SERVED, tmp_path / "pipeline")
    launch = Launch("SKLearnServer", SERVERS / "sklearnserver", seldon_parameters(model_uri=folder))
    with running(launch, [MODELSHELF], env={"MODELSHELF_FAST_PATH": fast_path}) as (service,):
        said = service.get("/api/v1.0/metadata").json()["custom"]["fast path"]
        assert ("ColumnTransformer" in said) if fast_path == "true" else said.startswith("off")
        if fast_path == "true":  # one line says what serves, the final step's call included
            log = service.log()
            assert "Pipeline.predict_proba: the ColumnTransformer's matrix built from the " in log
            assert "then LogisticRegression.predict_proba's fast path (the linear model's" in log
            assert "LogisticRegression.predict_proba: " not in log, log
        for frame in (table(1, 31), table(25, 32)):
            want = SERVED.predict_proba(frame)
            rows = frame[NAMES].to_numpy().tolist()
            seldon = service.post(
                "/api/v1.0/predictions", {"data": {"names": NAMES, "ndarray": rows}}
            )
            assert seldon.status_code == 200, seldon.text
            np.testing.assert_array_equal(seldon.json()["data"]["ndarray"], want)
            v2 = service.post(f"/v2/models/{folder.name}/infer", v2_body(frame))
            assert v2.status_code == 200, v2.text
            (output,) = v2.json()["outputs"]
            np.testing.assert_array_equal(np.reshape(output["data"], output["shape"]), want)
        unknown = table(2, 33)
        unknown.loc[0, "city"] = "atlantis"
        rows = unknown[NAMES].to_numpy().tolist()
        refused = service.post("/api/v1.0/predictions", {"data": {"names": NAMES, "ndarray": rows}})
        assert refused.status_code == 400, refused.text
        assert "atlantis" in refused.text
        refused = service.post(f"/v2/models/{folder.name}/infer", v2_body(unknown))
        assert refused.status_code == 400, refused.text


def test_modelshelf_serve_says_why_a_pipeline_gets_no_fast_path(tmp_path):
    """A pipeline whose encoder learnt numbers: one INFO line in the server's log names it,
    and scikit-learn's own call serves."""
    model = pipeline(
        ColumnTransformer(
            [
                ("categories", OneHotEncoder(handle_unknown="ignore"), ["city", "rooms"]),
                ("numbers", StandardScaler(), ["area"]),
            ]
        )
    )
    folder = models.save(model, tmp_path / "pipeline")
    launch = Launch("SKLearnServer", SERVERS / "sklearnserver", seldon_parameters(model_uri=folder))
    with running(launch, [MODELSHELF], env={"MODELSHELF_FAST_PATH": "true"}) as (service,):
        log = service.log()
        reason = (
            "Pipeline.predict_proba: the ColumnTransformer fast path declines: transformer "
            "'categories': OneHotEncoder learnt categories int64 for column 'rooms'"
        )
        assert log.count(reason) == 1, log
        said = service.get("/api/v1.0/metadata").json()["custom"]["fast path"]
        assert said == "the framework's own call"
        frame = table(3, 34)
        rows = frame[NAMES].to_numpy().tolist()
        answer = service.post("/api/v1.0/predictions", {"data": {"names": NAMES, "ndarray": rows}})
        assert answer.status_code == 200, answer.text
        np.testing.assert_array_equal(answer.json()["data"]["ndarray"], model.predict_proba(frame))


def random_frame(rng, rows: int, categories: dict, scales: dict) -> pd.DataFrame:
    """Text columns drawn from ``categories``; number columns of ``scales`` (0: int64)."""
    data: dict = {}
    for name, values in categories.items():
        data[name] = np.array(values, dtype=object)[rng.integers(len(values), size=rows)]
    for name, scale in scales.items():
        drawn = rng.standard_normal(rows) * (scale or 100)
        data[name] = drawn if scale else drawn.round().astype(np.int64)
    return pd.DataFrame(data)


def test_random_pipelines_and_frames():
    """Seeded fuzzing: 1-3 text columns of 1-15 categories, 1-3 number columns (int64 or
    float64, scales up to 1e150) scaled or passed through, dense or sparse outputs
    (``sparse_threshold`` 0 / 0.3 / 1, either encoder output), logistic or ridge; requests of
    1 to 60 rows, now and then with an unknown category (scikit-learn's call)."""
    rng = np.random.default_rng(2024)
    for _ in range(12):
        categories = {
            f"t{i}": [f"t{i}-{j}" for j in range(int(rng.integers(1, 16)))]
            for i in range(int(rng.integers(1, 4)))
        }
        scales = {
            f"n{i}": float(10 ** rng.uniform(-3, 150)) if rng.integers(2) else 0.0
            for i in range(int(rng.integers(1, 4)))
        }
        scaled = [n for n in scales if rng.integers(2)]
        passed = [n for n in scales if n not in scaled]
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=bool(rng.integers(2)))
        entries = [
            ("text", encoder, list(categories)),
            ("scaled", StandardScaler(with_mean=bool(rng.integers(2))), scaled),
            ("passed", "passthrough", passed),
        ]
        threshold = float(rng.choice([0.0, 0.3, 1.0]))
        columns = ColumnTransformer([e for e in entries if e[2]], sparse_threshold=threshold)
        train = random_frame(rng, 200, categories, scales)
        if rng.integers(2):
            target = rng.integers(0, int(rng.integers(2, 4)), size=200)
            model = Pipeline([("c", columns), ("f", LogisticRegression(max_iter=50))])
            method = "predict_proba"
        else:
            target = rng.standard_normal(200)
            model = Pipeline([("c", columns), ("f", Ridge())])
            method = "predict"
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence, overflow: both sides alike
            model.fit(train, target)
            fast = accelerate(model, method, getattr(model, method))
            assert isinstance(fast, Accelerated), model
            build = matrix_builder(model.steps[0][1])
            for _ in range(6):
                X = random_frame(rng, int(rng.choice([1, 2, 7, 60])), categories, scales)
                if rng.integers(4) == 0:
                    X.loc[0, "t0"] = "unknown"
                else:
                    assert_same_matrix(build(X), model.steps[0][1].transform(X))
                assert_same(outcome(fast, X), outcome(getattr(model, method), X))
