"""mmkit.metrics.classification (and the classification task's evaluate) on hand-computed cases."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

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
    # macro-F1 averages the classes present in the targets (a, b)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert r["confusion_matrix"][0] == [1, 0, 0, 1]
    assert r["confusion_matrix"][3] == [0, 0, 0, 0]


def test_perfect_and_empty():
    t = torch.tensor([2, 0, 1, 1])
    r = classification_report(t, t.clone(), LABELS)
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0
    empty = classification_report(
        torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), LABELS
    )
    assert empty["accuracy"] == 0.0 and empty["macro_f1"] == 0.0 and empty["num_samples"] == 0
    assert empty["confusion_matrix"] == [[0] * 3] * 3


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


def test_top_k():
    probs = torch.tensor([0.1, 0.7, 0.2])
    assert top_k(probs, LABELS, 2) == [
        {"label": "dog", "score": 0.7},
        {"label": "owl", "score": 0.2},
    ]
    assert [t["label"] for t in top_k(probs, LABELS, 10)] == ["dog", "owl", "cat"]  # clamped
    assert len(top_k(probs, LABELS, 0)) == 1
