"""Train an ElasticNet on scikit-learn's diabetes data: the entry point of this project (see MLproject).

    modelpack run examples/diabetes_project -P alpha=0.01 -P l1_ratio=0.75

The script has no run handling of its own: `modelpack run` creates the run and hands it over (MODELPACK_RUN_ID),
so the log_* calls below land in that run, which ends FINISHED or FAILED with the script. Run by itself
(`python train.py 0.01 0.75`), its first log_* call starts a run, ended when the script exits.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

import modelpack


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("alpha", type=float, help="regularisation strength")
    parser.add_argument("l1_ratio", type=float, help="L1 share of the regularisation")
    args = parser.parse_args(argv)

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=42)
    model = ElasticNet(alpha=args.alpha, l1_ratio=args.l1_ratio, random_state=42).fit(X_train, y_train)
    predicted = model.predict(X_test)

    modelpack.log_params({"alpha": args.alpha, "l1_ratio": args.l1_ratio})
    modelpack.log_metric("rmse", float(np.sqrt(mean_squared_error(y_test, predicted))))
    modelpack.log_metric("mae", float(mean_absolute_error(y_test, predicted)))
    modelpack.log_metric("r2", float(r2_score(y_test, predicted)))
    info = modelpack.log_model(model, "model", input_example=X_train.head(3))
    print(f"ElasticNet(alpha={args.alpha}, l1_ratio={args.l1_ratio}) logged as {info.model_uri}")


if __name__ == "__main__":
    main()
