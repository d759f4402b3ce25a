"""Trains the iris models of the scikit-learn server image and packs each as a .tar.gz artifact.

    python3 train.py OUT_DIR

writes OUT_DIR/iris-1.0.0.tar.gz (LogisticRegression), OUT_DIR/iris-2.0.0.tar.gz (DecisionTree) and
OUT_DIR/iris-permuted-1.0.0.tar.gz (a DecisionTree trained on the training labels shuffled with a
fixed seed: a deliberately bad model, the candidate a shadow test must stop), each holding, at the
top level (the fetcher unpacks it into MODEL_PATH as it is):
    model.joblib    the fitted estimator (joblib, as the scikit-learn of the image loads it)
    metadata.json   name, version, algorithm, features, class names, hold-out accuracy, examples
and OUT_DIR/agreement.json: for each pair of models ("iris-1.0.0|iris-2.0.0", names sorted), the
share of the 150 iris rows on which both predict the same class, computed here from the fitted
estimators: the figure a shadow comparison of the two must report. The archives are reproducible for
the same scikit-learn and numpy: fixed seeds, members sorted, no timestamps or owners. A good model
that scores under 90% on the held-out rows, or misclassifies one of its examples (the first flower of
each species), fails the build; so does a bad model that scores 60% or more, or agrees with a good
one on 60% of the rows or more.
"""
import gzip
import io
import itertools
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

# (name, version, algorithm, estimator, trained on shuffled labels)
MODELS = [
    ("iris", "1.0.0", "LogisticRegression(max_iter=1000)", lambda: LogisticRegression(max_iter=1000), False),
    ("iris", "2.0.0", "DecisionTreeClassifier(max_depth=3, random_state=0)", lambda: DecisionTreeClassifier(max_depth=3, random_state=0), False),
    ("iris-permuted", "1.0.0", "DecisionTreeClassifier(max_depth=3, random_state=0) on labels shuffled with seed 23",
     lambda: DecisionTreeClassifier(max_depth=3, random_state=0), True),
]
# Above this, the bad model would not be bad enough to tell apart from a good one (chance is 1/3).
BAD_AT_MOST = 0.6


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
    # The labels the bad model learns: the training rows' labels in a fixed random order, so that
    # the features say nothing about them.
    shuffled = numpy.random.default_rng(23).permutation(y_train)
    predictions = {}
    for name, version, algorithm, make, permuted in MODELS:
        model = make().fit(x_train, shuffled if permuted else y_train)
        accuracy = float(model.score(x_test, y_test))
        if permuted:
            if accuracy >= BAD_AT_MOST:
                sys.exit(f"{name} {version} ({algorithm}) scores {accuracy:.3f} on the held-out rows: not bad enough (under {BAD_AT_MOST})")
        else:
            if accuracy < 0.9:
                sys.exit(f"{name} {version} ({algorithm}) scores {accuracy:.3f} on the held-out rows: under 0.9")
            # The examples are what clients check answers against (the labels they must get back).
            wrong = [(row, iris.target_names[c]) for c, row in enumerate(examples) if model.predict([row])[0] != c]
            if wrong:
                sys.exit(f"{name} {version} ({algorithm}) misclassifies its examples: {wrong}")
        predictions[f"{name}-{version}"] = (model.predict(iris.data), permuted)
        weights = io.BytesIO()
        joblib.dump(model, weights)
        training = {"dataset": "iris (sklearn.datasets.load_iris)", "trainRows": len(y_train), "testRows": len(y_test), "testAccuracy": round(accuracy, 4)}
        if permuted:
            training["labels"] = "the training labels shuffled (numpy.random.default_rng(23).permutation)"
        metadata = {
            "name": name,
            "version": version,
            "algorithm": algorithm,
            "framework": f"scikit-learn {sklearn.__version__}",
            "file": "model.joblib",
            "features": list(iris.feature_names),
            "classes": list(iris.target_names),
            "examples": examples,
            "training": training,
        }
        archive = os.path.join(out_dir, f"{name}-{version}.tar.gz")
        pack(archive, {"model.joblib": weights.getvalue(), "metadata.json": (json.dumps(metadata, indent=2) + "\n").encode()})
        print(f"{archive}: {algorithm}, held-out accuracy {accuracy:.3f}, {os.path.getsize(archive)} bytes", flush=True)
    agreement = {}
    for a, b in itertools.combinations(sorted(predictions), 2):
        (pa, bad_a), (pb, bad_b) = predictions[a], predictions[b]
        # k / 150 as a double: the same number a comparison of the served answers computes.
        share = int(numpy.sum(pa == pb)) / len(iris.target)
        if (bad_a or bad_b) and not (bad_a and bad_b) and share >= BAD_AT_MOST:
            sys.exit(f"{a} and {b} agree on {share:.3f} of the iris rows: the bad model is not bad enough (under {BAD_AT_MOST})")
        agreement[f"{a}|{b}"] = share
    with open(os.path.join(out_dir, "agreement.json"), "w", encoding="utf-8") as out:
        out.write(json.dumps(agreement, indent=2, sort_keys=True) + "\n")
    print(f"agreement on the {len(iris.target)} iris rows: " + ", ".join(f"{k} {v:.4f}" for k, v in agreement.items()), flush=True)

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: train.py OUT_DIR")
    main(sys.argv[1])
