"""The bundled example: train an ElasticNet on scikit-learn's diabetes data and save it.

    python examples/diabetes.py [PATH]     # default PATH: diabetes_model (replaced if present)
"""

from __future__ import annotations

import sys

from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet

import modelpack


def main(path: str = "diabetes_model") -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = ElasticNet(alpha=0.01, l1_ratio=0.5).fit(X, y)
    modelpack.save_model(model, path, input_example=X.head(3), overwrite=True)
    print(f"Saved {path}; predictions on 3 rows:", modelpack.load_model(path).predict(X.head(3)))


if __name__ == "__main__":
    main(*sys.argv[1:2])
