"""mmkit.metrics.classification (and the classification task's evaluate) on hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mmkit.errors import UserInputError
from mmkit.metrics.classification import classification_report, confusion_matrix
from mmkit.tasks.classify import ClassificationTask, Classifier, top_k

LABELS = ["cat", "dog", "owl"]
#                      cat cat cat dog dog owl owl owl
TARGETS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
PREDS = torch.tensor([0, 0, 1, 1, 0, 2, 2, 0])


def test_confusion_matrix_rows_are_true_labels():
    cm = confusion_matrix(TARGETS, PREDS, 3)
    assert cm.tolist() == [
        [2, 1, 0],  # true cat: 2 right, 1 called dog
        [1, 1, 0],  # true dog: 1 called cat, 1 right
        [1, 0, 2],  # true owl: 1 called cat, 2 right
    ]
    assert confusion_matrix(torch.tensor([2]), torch.tensor([0]), 3).tolist() == [
        [0, 0, 0],
        [0, 0, 0],
        [1, 0, 0],
    ]


def test_report_hand_computed():
    r = classification_report(TARGETS, PREDS, LABELS)
    assert r["accuracy"] == pytest.approx(5 / 8)
    assert r["num_samples"] == 8
    assert r["labels"] == LABELS
    assert r["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 0, 2]]
    expected = {
        # precision = tp / predicted as it, recall = tp / support
        "cat": (2 / 4, 2 / 3, 4 / 7, 3),
        "dog": (1 / 2, 1 / 2, 1 / 2, 2),
        "owl": (2 / 2, 2 / 3, 4 / 5, 3),
    }
    assert list(r["per_class"]) == LABELS
    for label, (p, rec, f1, support) in expected.items():
        got = r["per_class"][label]
        assert got["precision"] == pytest.approx(p)
        assert got["recall"] == pytest.approx(rec)
        assert got["f1"] == pytest.approx(f1)
        assert got["support"] == support and isinstance(got["support"], int)
    assert r["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 4 / 5) / 3)
    # the eval --json document: plain JSON types only
    assert json.loads(json.dumps(r)) == r
    assert set(r) == {
        "accuracy",
        "macro_f1",
        "num_samples",
        "labels",
        "per_class",
        "confusion_matrix",
    }


def test_class_absent_from_targets():
    labels = ["a", "b", "c", "d"]
    targets = torch.tensor([0, 0, 1, 1])
    preds = torch.tensor([0, 3, 1, 1])  # "d" never true but predicted once; "c" never seen
    r = classification_report(targets, preds, labels)
    assert r["accuracy"] == pytest.approx(3 / 4)
    assert r["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert r["per_class"]["b"] == pytest.approx(
        {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    )
    # no division by zero: absent classes score 0, with support 0
    for label in ("c", "d"):
        assert r["per_class"][label] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # scikit-learn's macro: the labels in the targets OR the predictions (a, b, d), not c.
    # Averaging over the targets' classes only (a, b) would give 0.833.
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert r["confusion_matrix"][0] == [1, 0, 0, 1]
    assert r["confusion_matrix"][3] == [0, 0, 0, 0]


def test_perfect():
    t = torch.tensor([2, 0, 1, 1])
    r = classification_report(t, t.clone(), LABELS)
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0


def test_bad_input_is_a_user_error_not_a_silent_zero():
    empty = torch.tensor([], dtype=torch.long)
    with pytest.raises(UserInputError, match="no items to score"):
        classification_report(empty, empty, LABELS)
    with pytest.raises(UserInputError, match="differ in length: 3 vs 2"):
        classification_report(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), LABELS)
    with pytest.raises(UserInputError, match=r"predictions must be class indices in \[0, 3\)"):
        classification_report(torch.tensor([0, 1]), torch.tensor([0, 3]), LABELS)
    with pytest.raises(UserInputError, match=r"targets must be class indices in \[0, 3\)"):
        classification_report(torch.tensor([-1, 1]), torch.tensor([0, 1]), LABELS)


# --- parity with scikit-learn ---------------------------------------------------------------------


def assert_matches_sklearn(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> None:
    """The report equals scikit-learn's accuracy, macro-F1, per-class P/R/F1/support and matrix."""
    labels = [f"class{i}" for i in range(num_classes)]
    r = classification_report(targets, preds, labels)
    y_true, y_pred = targets.numpy(), preds.numpy()
    everything = list(range(num_classes))
    assert r["num_samples"] == len(y_true)
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), rel=1e-12)
    # f1_score's own default label set (targets | predictions), as users compute it
    assert r["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro"), rel=1e-12, abs=1e-15
    )
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=everything, zero_division=0
    )
    got = [r["per_class"][label] for label in labels]
    np.testing.assert_allclose([g["precision"] for g in got], precision, rtol=1e-12)
    np.testing.assert_allclose([g["recall"] for g in got], recall, rtol=1e-12)
    np.testing.assert_allclose([g["f1"] for g in got], f1, rtol=1e-12)
    assert [g["support"] for g in got] == support.tolist()
    cm = skm.confusion_matrix(y_true, y_pred, labels=everything)
    assert r["confusion_matrix"] == cm.tolist()
    assert json.loads(json.dumps(r)) == r


@pytest.mark.parametrize("seed", range(60))
def test_parity_with_sklearn_on_random_cases(seed):
    g = torch.Generator().manual_seed(seed)
    num_classes = int(torch.randint(1, 13, (), generator=g))
    n = int(torch.randint(1, 400, (), generator=g))
    # skewed class frequencies, so small cases often miss classes in targets or predictions
    weights = torch.rand(num_classes, generator=g) ** 3 + 1e-3
    targets = torch.multinomial(weights, n, replacement=True, generator=g)
    noise = torch.multinomial(weights.flip(0), n, replacement=True, generator=g)
    right = torch.rand(n, generator=g) < float(torch.rand((), generator=g))
    preds = torch.where(right, targets, noise)
    assert_matches_sklearn(targets, preds, num_classes)


@pytest.mark.parametrize(
    ("targets", "preds", "num_classes"),
    [
        pytest.param([0, 0, 1, 1], [0, 3, 1, 1], 4, id="class-predicted-but-never-true"),
        pytest.param([0, 1, 2, 2], [0, 1, 1, 2], 5, id="classes-in-neither"),
        pytest.param([2, 2, 2], [0, 1, 0], 3, id="class-true-but-never-predicted"),
        pytest.param([0, 0, 0], [0, 0, 0], 1, id="one-class-only"),
        pytest.param([1, 1], [1, 1], 4, id="one-class-present-of-four"),
        pytest.param([0, 1, 2, 0], [1, 2, 0, 2], 3, id="all-wrong"),
        pytest.param([0], [1], 2, id="one-item-wrong"),
        pytest.param([3], [3], 4, id="one-item-right"),
    ],
)
def test_parity_with_sklearn_on_edge_cases(targets, preds, num_classes):
    assert_matches_sklearn(torch.tensor(targets), torch.tensor(preds), num_classes)


def test_all_wrong_scores_zero():
    r = classification_report(torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 2]), LABELS)
    assert r["accuracy"] == 0.0 and r["macro_f1"] == 0.0
    assert all(c["f1"] == 0.0 for c in r["per_class"].values())


def test_tied_probabilities_go_to_the_first_class_as_in_numpy():
    """The report scores hard predictions; mmkit's callers break ties with argmax (first max)."""
    probs = torch.tensor(
        [
            [0.4, 0.4, 0.2],  # tie 0/1 -> 0
            [0.2, 0.4, 0.4],  # tie 1/2 -> 1
            [1 / 3, 1 / 3, 1 / 3],  # three-way tie -> 0
            [0.5, 0.0, 0.5],  # tie 0/2 -> 0
            [0.1, 0.2, 0.7],
        ]
    )
    targets = torch.tensor([1, 2, 2, 2, 2])
    preds = probs.argmax(1)
    assert preds.tolist() == [0, 1, 0, 0, 2] == np.argmax(probs.numpy(), axis=1).tolist()
    assert_matches_sklearn(targets, preds, 3)
    r = classification_report(targets, preds, LABELS)
    assert r["accuracy"] == pytest.approx(1 / 5)
    assert r["confusion_matrix"] == [[0, 0, 0], [1, 0, 0], [2, 1, 1]]


class _FixedLogits(nn.Module):
    """Backbone whose logits are the input's first 3 features: predictions are set by the data."""

    def forward(self, x):
        return x[..., :3]


def test_classification_task_evaluate_averages_views():
    model = Classifier(nn.Sequential(), _FixedLogits())
    # item 0: two views that disagree; their mean softmax favours class 1
    views = torch.tensor(
        [
            [[4.0, 0.0, 0.0], [0.0, 9.0, 0.0]],
            [[0.0, 0.0, 5.0], [0.0, 0.0, 5.0]],
            [[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]],
        ]
    )
    targets = torch.tensor([1, 2, 1])
    probs = model.predict_proba(views)
    assert probs.shape == (3, 3)
    assert torch.allclose(probs.sum(1), torch.ones(3))
    expected0 = (views[0].softmax(-1)).mean(0)
    assert torch.allclose(probs[0], expected0)
    task = ClassificationTask(LABELS)
    report = task.evaluate(
        model, DataLoader(TensorDataset(views, targets), batch_size=2), torch.device("cpu")
    )
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["confusion_matrix"] == [[0, 0, 0], [1, 1, 0], [0, 0, 1]]
    nll = -torch.log(probs[torch.arange(3), targets]).mean()
    assert report["loss"] == pytest.approx(float(nll), rel=1e-5)


def test_classification_task_evaluate_breaks_ties_to_the_first_class():
    model = Classifier(nn.Sequential(), _FixedLogits())
    # one view each; equal logits give exactly equal probabilities
    views = torch.tensor([[[3.0, 3.0, 0.0]], [[0.0, 2.0, 2.0]], [[1.0, 1.0, 1.0]]])
    targets = torch.tensor([1, 2, 0])
    report = ClassificationTask(LABELS).evaluate(
        model, DataLoader(TensorDataset(views, targets), batch_size=3), torch.device("cpu")
    )
    # predictions 0, 1, 0: only the three-way tie lands on its target
    assert report["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert report["accuracy"] == pytest.approx(1 / 3)


def test_top_k():
    probs = torch.tensor([0.1, 0.7, 0.2])
    assert top_k(probs, LABELS, 2) == [
        {"label": "dog", "score": 0.7},
        {"label": "owl", "score": 0.2},
    ]
    assert [t["label"] for t in top_k(probs, LABELS, 10)] == ["dog", "owl", "cat"]  # clamped
    assert len(top_k(probs, LABELS, 0)) == 1
