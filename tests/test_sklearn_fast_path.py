"""The sklearn flavor's array shortcut and the decoder's float-block shortcut give exactly
the predictions of the checked DataFrame path, and step aside when they cannot."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import modelpack
from modelpack.server.decode import decode_request


def _pyfunc(model, tmp_path, **kw):
    modelpack.save_model(model, tmp_path / "m", **kw)
    return modelpack.load_model(tmp_path / "m")


def test_array_shortcut_matches_dataframe_predictions(tmp_path, diabetes, elasticnet):
    X, _ = diabetes
    model = _pyfunc(elasticnet, tmp_path, input_example=X.head(3))
    impl = model.unwrap_python_model()
    assert impl._array_ok
    frame = pd.DataFrame(X.values.tolist(), columns=list(X.columns))  # as the server builds it
    with warnings.catch_warnings(record=True) as caught:
        fast = model.predict(frame)
    assert not [w for w in caught if "feature names" in str(w.message)]
    np.testing.assert_array_equal(fast, elasticnet.predict(frame))


def test_decoder_float_block_matches_checked_path(tmp_path, diabetes, elasticnet):
    import orjson

    X, _ = diabetes
    model = _pyfunc(elasticnet, tmp_path, input_example=X.head(3))
    assert model.all_double_inputs
    body = orjson.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(100).values.tolist()}})
    fast, _ = decode_request("application/json", body, all_double=True)
    slow, _ = decode_request("application/json", body, all_double=False)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast.to_numpy().flags.f_contiguous == slow.to_numpy().flags.f_contiguous
    np.testing.assert_array_equal(model.predict(fast), model.predict(slow))


@pytest.mark.parametrize("row, fragment", [
    (b"[true, 1.0]", "received bool"),
    (b"[null, 1.0]", None),
    (b'["1.5", 1.0]', "is not a number"),
])
def test_decoder_block_steps_aside_for_non_numbers(tmp_path, row, fragment):
    class Echo(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input.to_numpy()

    model = _pyfunc(Echo(), tmp_path, input_example=pd.DataFrame({"a": [0.5], "b": [1.5]}))
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [' + row + b"]}}"
    data, _ = decode_request("application/json", body, all_double=True)
    assert data["a"].dtype != np.float64 or np.isnan(data["a"][0])  # not silently turned into a number
    if fragment is None:
        return
    with pytest.raises(modelpack.ModelpackError, match=fragment):
        model.predict(data)


def test_column_transformer_pipeline_keeps_the_dataframe(tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    df = pd.DataFrame({"city": ["a", "b", "a", "c"], "x": [1.0, 2.0, 3.0, 4.0]})
    y = [1.0, 2.0, 3.0, 5.0]
    pipe = make_pipeline(ColumnTransformer([("oh", OneHotEncoder(), ["city"])], remainder="passthrough"),
                         LinearRegression()).fit(df, y)
    model = _pyfunc(pipe, tmp_path)
    assert not model.unwrap_python_model()._array_ok
    np.testing.assert_array_equal(model.predict(df), pipe.predict(df))


def test_custom_step_keeps_the_dataframe(tmp_path, diabetes):
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    class KeepBmi(TransformerMixin, BaseEstimator):  # uses column names: needs the frame
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X[["bmi"]]

    X, y = diabetes
    pipe = make_pipeline(KeepBmi(), Ridge()).fit(X, y)
    model = _pyfunc(pipe, tmp_path)
    assert not model.unwrap_python_model()._array_ok
    np.testing.assert_array_equal(model.predict(X), pipe.predict(X))


def test_shuffled_columns_without_signature_reach_sklearn(tmp_path, diabetes, elasticnet):
    X, _ = diabetes
    model = _pyfunc(elasticnet, tmp_path)  # no example, no signature: nothing reorders columns
    with pytest.raises(ValueError, match="feature names"):
        model.predict(X[list(reversed(X.columns))])


@pytest.mark.parametrize("data, message", [
    (b"[[1.0, 2.0], [3.0]]", "row 1 has 1 values; expected 2"),
    (b"[[1.0, 2.0, 3.0], [4.0]]", "row 0 has 3 values; expected 2"),  # same total count, wrong shape
    (b"[1.0, 2.0]", "row 0 has float; expected 2"),
])
def test_float_block_refuses_misshapen_rows_like_the_checked_path(data, message):
    from modelpack.errors import InvalidInputError

    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": ' + data + b"}}"
    for all_double in (True, False):
        with pytest.raises(InvalidInputError, match=message):
            decode_request("application/json", body, all_double=all_double)


def test_float_block_leaves_nested_values_to_the_checked_path():
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, [2.0]]]}}'
    fast, _ = decode_request("application/json", body, all_double=True)
    slow, _ = decode_request("application/json", body, all_double=False)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["b"].dtype == object
