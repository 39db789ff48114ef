"""statsmodels flavor: fitted results objects (``sm.OLS(y, X).fit()``, GLM, Logit, ... results).

**This flavor writes and reads a pickle: loading a statsmodels model runs code.** The results
object is saved with its own ``save(path, remove_data=...)`` (pickle inside statsmodels) to
``model.statsmodels`` and read back with ``statsmodels.iolib.smpickle.load_pickle``. Only load
statsmodels models you trust (see docs/trust.md).

The MLmodel ``statsmodels`` section has MLflow's fields (``statsmodels_version``, ``data``,
``code``) and the same file name, with ``python_function.data`` naming it: exactly what MLflow's
own loader reads, so the directory names ``mlflow.statsmodels`` as its ``loader_module`` and MLflow
loads it without modelpack installed; modelpack reads the directories of ``mlflow.statsmodels``
(an alias). ``remove_data=True`` drops the arrays of length
``nobs`` (the training data, residuals, ...) before pickling, as statsmodels' ``remove_data``
does; the default keeps them, as MLflow's does.

The python_function side predicts like MLflow's: ``results.predict(model_input)``; ``exog``
columns go in the fitted order, so a model fitted with ``sm.add_constant`` needs its ``const``
column in the input. Time-series models (``statsmodels.tsa``), whose ``predict`` takes
``start``/``end`` instead of data, take one input row with columns ``start`` and ``end``, as in
MLflow; any other input for them is refused. ``params`` are not used (ignored with a warning).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelpack.descriptor import ModelDescriptor
from modelpack.errors import FlavorError, InvalidInputError, ModelLoadError
from modelpack.flavor import Flavor, PyFuncImplementation, SavedFlavor, class_from_library, load_native, load_pyfunc_at

logger = logging.getLogger(__name__)

FLAVOR_NAME = "statsmodels"
DATA_FILE = "model.statsmodels"
#: Written as loader_module: MLflow's own loader reads what this flavor writes (docs/flavors.md).
MLFLOW_LOADER = "mlflow.statsmodels"


class StatsmodelsFlavor(Flavor):
    name = FLAVOR_NAME
    loader_module = "modelpack.flavors.statsmodels"
    aliases = (MLFLOW_LOADER,)

    def can_save(self, model: Any) -> bool:
        # Results objects (and their wrappers) have ``save``; unfitted ``Model`` objects do not.
        return class_from_library(model, "statsmodels") and callable(getattr(model, "predict", None)) \
            and callable(getattr(model, "save", None))

    def requirements(self, model: Any) -> list[str]:
        return ["statsmodels"]

    def save(  # type: ignore[override]  # each flavor takes its own keyword options
        self, model: Any, path: Path, *, remove_data: bool = False
    ) -> SavedFlavor:
        import statsmodels
        from statsmodels.base.model import Results
        from statsmodels.base.wrapper import ResultsWrapper

        if not isinstance(model, (Results, ResultsWrapper)):
            raise FlavorError(
                f"{type(model).__name__} is not a fitted statsmodels results object "
                "(statsmodels.base.model.Results or ResultsWrapper); save what fit() returns"
            )
        model.save(str(path / DATA_FILE), remove_data=bool(remove_data))
        native = {"statsmodels_version": statsmodels.__version__, "data": DATA_FILE, "code": None}
        return SavedFlavor(native=native, pyfunc={"data": DATA_FILE}, loader_module=MLFLOW_LOADER)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> Any:
        conf = descriptor.flavors.get(FLAVOR_NAME) or {}
        file_name = conf.get("data") or descriptor.pyfunc.get("data") or DATA_FILE
        path = model_dir / file_name
        if not path.is_file():
            raise ModelLoadError(f"Model file '{path}' is missing")
        from statsmodels.iolib.smpickle import load_pickle

        try:
            return load_pickle(str(path))  # a pickle: runs code (docs/trust.md)
        except ModuleNotFoundError as exc:  # e.g. pandas 3 frames pickled where pyarrow backs their strings
            raise ModelLoadError(
                f"statsmodels cannot load '{path}': the pickle needs the module '{exc.name}', which is not "
                "installed here; install the model's requirements (its requirements.txt)"
            ) from exc
        except Exception as exc:
            raise ModelLoadError(f"statsmodels cannot load '{path}': {type(exc).__name__}: {exc}") from exc

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> StatsmodelsPyFunc:
        return StatsmodelsPyFunc(self.load(model_dir, descriptor))


class StatsmodelsPyFunc(PyFuncImplementation):
    """python_function wrapper, predicting like MLflow's ``mlflow.statsmodels`` wrapper."""

    def __init__(self, model: Any) -> None:
        from statsmodels.tsa.base.tsa_model import TimeSeriesModel

        self.model = model
        self._time_series = isinstance(getattr(model, "model", None), TimeSeriesModel)

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        if params:
            logger.warning("Params %s are not used by statsmodels models; ignoring them", sorted(params))
        if not self._time_series:
            return self.model.predict(model_input)
        columns = getattr(model_input, "columns", ())
        if getattr(model_input, "shape", (0,))[0] != 1 or "start" not in columns or "end" not in columns:
            raise InvalidInputError(
                "Input for a statsmodels time-series model must be one row with columns 'start' and 'end'"
            )
        row = model_input.iloc[0]
        return self.model.predict(start=row["start"], end=row["end"])


_FLAVOR = StatsmodelsFlavor()


def save_model(model: Any, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save a fitted statsmodels results object; see :func:`modelpack.save_model` (and ``remove_data``)."""
    import modelpack

    return modelpack.save_model(model, path, flavor=FLAVOR_NAME, **kwargs)


def load_model(path: str | Path) -> Any:
    """Load the native statsmodels results object saved at ``path`` (unpickles it: runs code)."""
    return load_native(_FLAVOR, path)


def _load_pyfunc(data_path: str) -> PyFuncImplementation:
    """MLflow's loader hook for directories naming ``modelpack.flavors.statsmodels`` (written before they named
    ``mlflow.statsmodels``): MLflow loads them when modelpack is installed."""
    return load_pyfunc_at(_FLAVOR, data_path)
