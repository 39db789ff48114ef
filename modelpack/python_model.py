"""The base class for custom Python models and the context they are loaded with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PythonModelContext:
    """What a custom model sees at load time.

    ``artifacts`` maps each artifact name given to ``save_model(artifacts=...)`` to the
    absolute path of its copy inside the model directory.
    """

    artifacts: dict[str, str] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)


class PythonModel:
    """Subclass this to package arbitrary Python inference code as a model.

    ``load_context`` runs once when the model is loaded (read artifacts there);
    ``predict`` runs for every call with the (schema-checked) input.
    """

    def load_context(self, context: PythonModelContext) -> None:
        """Load artifacts; called once before the first ``predict``."""

    def predict(self, context: PythonModelContext, model_input: Any, params: dict | None = None) -> Any:
        """Return predictions for ``model_input``."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict()")
