"""Trains the two iris models of the scikit-learn server image and packs each as a .tar.gz artifact.

    python3 train.py OUT_DIR

writes OUT_DIR/iris-1.0.0.tar.gz (LogisticRegression) and OUT_DIR/iris-2.0.0.tar.gz (DecisionTree),
each holding, at the top level (the fetcher unpacks it into MODEL_PATH as it is):
    model.joblib    the fitted estimator (joblib, as the scikit-learn of the image loads it)
    metadata.json   name, version, algorithm, features, class names, hold-out accuracy, examples
The archives are reproducible for the same scikit-learn and numpy: fixed seeds, members sorted,
no timestamps or owners. A model that scores under 90% on the held-out rows, or misclassifies one of
its examples (the first flower of each species), fails the build.
"""
import gzip
import io
import json
import os
import sys
import tarfile

import joblib
import numpy
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

MODELS = [
    ("1.0.0", "LogisticRegression(max_iter=1000)", lambda: LogisticRegression(max_iter=1000)),
    ("2.0.0", "DecisionTreeClassifier(max_depth=3, random_state=0)", lambda: DecisionTreeClassifier(max_depth=3, random_state=0)),
]


def pack(path, files):
    """A .tar.gz of `files` (name -> bytes) with no timestamps, owners or modes of the build's."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    with open(path, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())


def main(out_dir):
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(iris.data, iris.target, test_size=0.3, random_state=0, stratify=iris.target)
    # One row of each class, for the server's GET /predict (the request a load generator sends).
    examples = [iris.data[numpy.flatnonzero(iris.target == c)[0]].tolist() for c in range(len(iris.target_names))]
    os.makedirs(out_dir, exist_ok=True)
    for version, algorithm, make in MODELS:
        model = make().fit(x_train, y_train)
        accuracy = float(model.score(x_test, y_test))
        if accuracy < 0.9:
            sys.exit(f"iris {version} ({algorithm}) scores {accuracy:.3f} on the held-out rows: under 0.9")
        # The examples are what clients check answers against (the labels they must get back).
        wrong = [(row, iris.target_names[c]) for c, row in enumerate(examples) if model.predict([row])[0] != c]
        if wrong:
            sys.exit(f"iris {version} ({algorithm}) misclassifies its examples: {wrong}")
        weights = io.BytesIO()
        joblib.dump(model, weights)
        metadata = {
            "name": "iris",
            "version": version,
            "algorithm": algorithm,
            "framework": f"scikit-learn {sklearn.__version__}",
            "file": "model.joblib",
            "features": list(iris.feature_names),
            "classes": list(iris.target_names),
            "examples": examples,
            "training": {"dataset": "iris (sklearn.datasets.load_iris)", "trainRows": len(y_train), "testRows": len(y_test), "testAccuracy": round(accuracy, 4)},
        }
        archive = os.path.join(out_dir, f"iris-{version}.tar.gz")
        pack(archive, {"model.joblib": weights.getvalue(), "metadata.json": (json.dumps(metadata, indent=2) + "\n").encode()})
        print(f"{archive}: {algorithm}, held-out accuracy {accuracy:.3f}, {os.path.getsize(archive)} bytes", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: train.py OUT_DIR")
    main(sys.argv[1])
