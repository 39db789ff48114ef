"""The sklearn flavor's array shortcut and the decoder's float-block shortcut give exactly
the predictions of the checked DataFrame path, and step aside when they cannot."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import modelpack
from modelpack.float_rows import FloatRows
from modelpack.server.decode import RequestDecoder


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
    assert model.float_rows_columns == list(X.columns)
    body = orjson.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(100).values.tolist()}})
    fast, _ = RequestDecoder(float_rows=True)("application/json", body)
    slow, _ = RequestDecoder(float_rows=False)("application/json", body)
    assert isinstance(fast, FloatRows) and isinstance(slow, pd.DataFrame)
    pd.testing.assert_frame_equal(fast.to_frame(), slow)
    assert fast.array.flags.f_contiguous == slow.to_numpy().flags.f_contiguous
    calls = []
    impl = model.unwrap_python_model()
    impl.predict_float_rows = lambda *a, **kw: calls.append(1) or type(impl).predict_float_rows(impl, *a, **kw)
    model = modelpack.pyfunc.PyFuncModel(impl, model.metadata, model.model_dir)  # sees the spy
    np.testing.assert_array_equal(model.predict(fast), model.predict(slow))
    assert calls == [1]  # FloatRows went to the array hook, the DataFrame did not
    np.testing.assert_array_equal(model.predict(fast), elasticnet.predict(slow))  # what sklearn gives the frame


def test_float_rows_in_another_order_take_the_checked_path(tmp_path, diabetes, elasticnet):
    X, _ = diabetes
    model = _pyfunc(elasticnet, tmp_path, input_example=X.head(3))
    shuffled = list(reversed(X.columns))
    rows = FloatRows(np.asfortranarray(X[shuffled].head(20).to_numpy()), shuffled)
    # Reordered into a new block, the values meet BLAS in another memory layout: equal to the last bits.
    np.testing.assert_allclose(model.predict(rows), elasticnet.predict(X.head(20)), rtol=1e-12)
    missing = FloatRows(np.asfortranarray(X.iloc[:5, :9].to_numpy()), list(X.columns[:9]))
    with pytest.raises(modelpack.ModelpackError, match="s6"):
        model.predict(missing)


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
    data, _ = RequestDecoder(float_rows=True)("application/json", body)
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
    with pytest.raises(modelpack.errors.PredictionError, match="feature names") as raised:
        model.predict(X[list(reversed(X.columns))])
    assert isinstance(raised.value.__cause__, ValueError)  # scikit-learn's own error, kept as the cause


@pytest.mark.parametrize("data, message", [
    (b"[[1.0, 2.0], [3.0]]", "row 1 has 1 values; expected 2"),
    (b"[[1.0, 2.0, 3.0], [4.0]]", "row 0 has 3 values; expected 2"),  # same total count, wrong shape
    (b"[1.0, 2.0]", "row 0 has float; expected 2"),
])
def test_float_block_refuses_misshapen_rows_like_the_checked_path(data, message):
    from modelpack.errors import InvalidInputError

    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": ' + data + b"}}"
    for float_rows in (True, False):
        with pytest.raises(InvalidInputError, match=message):
            RequestDecoder(float_rows=float_rows)("application/json", body)


def test_float_block_leaves_nested_values_to_the_checked_path():
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, [2.0]]]}}'
    fast, _ = RequestDecoder(float_rows=True)("application/json", body)
    slow, _ = RequestDecoder(float_rows=False)("application/json", body)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["b"].dtype == object


def test_small_csv_of_numbers_decodes_like_pandas(tmp_path, diabetes, elasticnet):
    X, _ = diabetes
    model = _pyfunc(elasticnet, tmp_path, input_example=X.head(3))
    rng = np.random.default_rng(7)
    values = X.head(50).to_numpy() * 10.0 ** rng.integers(-8, 8, size=(50, 10))  # many digits and exponents
    body = X.head(50).assign(**{c: values[:, i] for i, c in enumerate(X.columns)}).to_csv(index=False).encode()
    body = body.replace(b"e-0", b"E-0")  # both exponent spellings
    fast, _ = RequestDecoder(float_rows=True)("text/csv", body)
    slow, _ = RequestDecoder(float_rows=False)("text/csv", body)
    assert isinstance(fast, FloatRows) and isinstance(slow, pd.DataFrame)
    pd.testing.assert_frame_equal(fast.to_frame(), slow, check_exact=True)
    np.testing.assert_array_equal(model.predict(fast), model.predict(slow))


@pytest.mark.parametrize("body", [
    b"a,b\n1,2\n3,4\n",  # integers: pandas reads int64, enforcement makes them doubles
    b"a,b\n1.5,2\n",
    b"a,b\n-1e3,+2.5E-2\n",
    b"a,b\n1.5,2",  # no final newline
])
def test_csv_fast_path_equals_pandas_then_enforcement(tmp_path, body):
    class Echo(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input.to_numpy()

    model = _pyfunc(Echo(), tmp_path, input_example=pd.DataFrame({"a": [0.5], "b": [1.5]}))
    fast, _ = RequestDecoder(float_rows=True)("text/csv", body)
    slow, _ = RequestDecoder(float_rows=False)("text/csv", body)
    assert isinstance(fast, FloatRows)
    np.testing.assert_array_equal(model.predict(fast), model.predict(slow))


@pytest.mark.parametrize("body", [
    b'"a","b"\n1,2\n',  # quoted names
    b"a,a\n1,2\n",  # duplicates: pandas renames them
    b"a,\n1,2\n",  # an unnamed column
    b"a,b\n1,\n",  # an empty field is NaN to pandas
    b"a,b\r\n1,2\r\n",  # CRLF
    b"a,b\n1, 2\n",  # a space
    b"a,b\n1,2\n\n3,4\n",  # a blank line pandas skips
    b"a,b\n1,2,3\n",  # too many fields: pandas' error
    b"a,b\n1\n",  # too few
    b"a,b\n1.2.3,4\n",  # not a number
    b"a,b\nnan,4\n",
    b"a,b\n1e400,4\n",  # too large for a double: infinity, which the checked path refuses by name
    b"a,b\n",  # a header only
    b"\xef\xbb\xbfa,b\n1,2\n",  # BOM
    b"a,b\n" + b"1.0,2.0\n" * 5000,  # large: pandas is faster
])
def test_csv_fast_path_leaves_everything_else_to_pandas(body):
    from modelpack.float_rows import from_csv

    assert from_csv(body) is None


def test_numeric_records_decode_like_from_records(tmp_path, diabetes, elasticnet):
    import orjson

    X, _ = diabetes
    model = _pyfunc(elasticnet, tmp_path, input_example=X.head(3))
    records = X.head(30).to_dict(orient="records")
    records[1] = dict(reversed(list(records[1].items())))  # same keys, another order
    records[2]["age"] = 1  # an int among floats
    body = orjson.dumps({"dataframe_records": records})
    fast, _ = RequestDecoder(float_rows=True)("application/json", body)
    slow, _ = RequestDecoder(float_rows=False)("application/json", body)
    assert isinstance(fast, FloatRows) and isinstance(slow, pd.DataFrame)
    np.testing.assert_array_equal(model.predict(fast), model.predict(slow))
    pd.testing.assert_frame_equal(fast.to_frame(), slow.astype(np.float64), check_exact=True)


@pytest.mark.parametrize("records", [
    b'[{"a": true, "b": 1.0}]',  # a bool is not a number here
    b'[{"a": null, "b": 1.0}]',
    b'[{"a": "1.5", "b": 1.0}]',
    b'[{"a": [1.0], "b": 1.0}]',
    b'[{"a": 1.0, "b": 1.0}, {"a": 1.0, "c": 1.0}]',  # different keys
    b'[{"a": 1.0, "b": 1.0}, {"a": 1.0}]',  # a missing key
])
def test_records_fast_path_leaves_everything_else_to_pandas(records):
    body = b'{"dataframe_records": ' + records + b"}"
    fast, _ = RequestDecoder(float_rows=True)("application/json", body)
    slow, _ = RequestDecoder(float_rows=False)("application/json", body)
    assert isinstance(fast, pd.DataFrame)
    pd.testing.assert_frame_equal(fast, slow)


def test_one_column_records_take_the_fast_path():
    fast, _ = RequestDecoder(float_rows=True)("application/json", b'{"dataframe_records": [{"a": 1.5}, {"a": 2}]}')
    assert isinstance(fast, FloatRows) and fast.columns == ["a"]
    np.testing.assert_array_equal(fast.array, [[1.5], [2.0]])


def test_float_block_holds_only_finite_numbers(tmp_path, diabetes, elasticnet):
    """What the fast path hands the model unchecked passes every check enforcement makes on double columns."""
    from modelpack.errors import InvalidInputError

    X, _ = diabetes
    model = _pyfunc(elasticnet, tmp_path, input_example=X.head(3))
    decode = RequestDecoder.for_model(model)
    body = X.head(3).assign(age=[1.0, 2.0, 3.0]).to_csv(index=False).encode().replace(b"\n1.0,", b"\n1e400,")
    assert body.count(b"\n1e400,") == 1
    data, _ = decode("text/csv", body)
    assert isinstance(data, pd.DataFrame)  # not a FloatRows block
    with pytest.raises(InvalidInputError, match="Column 'age' holds inf at row 0"):
        model.predict(data)
