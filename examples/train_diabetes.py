"""Train an ElasticNet on scikit-learn's diabetes data and track the run: params, metrics and the model.

    python examples/train_diabetes.py [ALPHA] [L1_RATIO] [--experiment NAME] [--register NAME]

The run goes to the tracking store named by MODELPACK_TRACKING_URI (default ./mlruns). Train a few times with
different values, compare, and serve the best one:

    python examples/train_diabetes.py 0.01 0.75
    python examples/train_diabetes.py 0.1 0.5
    modelpack runs list --experiment diabetes --order-by metrics.rmse
    modelpack serve -m "runs:/<run_id>/model" -p 5005
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

import modelpack


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("alpha", nargs="?", type=float, default=0.5, help="regularisation strength (default 0.5)")
    parser.add_argument("l1_ratio", nargs="?", type=float, default=0.5, help="L1 share of it (default 0.5)")
    parser.add_argument("--experiment", default="diabetes", help="experiment name (default: diabetes)")
    parser.add_argument("--register", metavar="NAME", help="also register the model under this name")
    args = parser.parse_args(argv)

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=42)

    modelpack.set_experiment(args.experiment)
    with modelpack.start_run(run_name=f"en-{args.alpha}-{args.l1_ratio}") as run:
        modelpack.log_params({"alpha": args.alpha, "l1_ratio": args.l1_ratio})
        model = ElasticNet(alpha=args.alpha, l1_ratio=args.l1_ratio, random_state=42).fit(X_train, y_train)
        predicted = model.predict(X_test)
        rmse = float(np.sqrt(mean_squared_error(y_test, predicted)))
        mae = float(mean_absolute_error(y_test, predicted))
        r2 = float(r2_score(y_test, predicted))
        modelpack.log_metrics({"rmse": rmse, "mae": mae, "r2": r2})
        modelpack.log_model(model, "model", input_example=X_train.head(3), registered_model_name=args.register)
    print(f"ElasticNet(alpha={args.alpha}, l1_ratio={args.l1_ratio}): rmse={rmse:.2f} mae={mae:.2f} r2={r2:.3f}")
    print(f"run {run.info.run_id}: serve it with  modelpack serve -m runs:/{run.info.run_id}/model")
    return run.info.run_id


if __name__ == "__main__":
    main()
