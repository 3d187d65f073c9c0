"""Classification metrics: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix.

The definitions are scikit-learn's (``tests/test_metrics.py`` checks them against it):

- ``accuracy``: ``accuracy_score``, the fraction of items whose prediction equals the target.
- per class: ``precision_recall_fscore_support(labels=range(C), zero_division=0)``: precision is
  ``tp / predicted``, recall ``tp / support``, F1 ``2 tp / (2 tp + fp + fn)``; a class never
  predicted has precision 0, a class never true has recall 0 and support 0.
- ``macro_f1``: ``f1_score(average="macro")``, the unweighted mean of the per-class F1 over the
  labels that occur in the targets *or* the predictions. A class predicted but never true counts
  (with F1 0); a class in neither is left out.
- ``confusion_matrix``: ``confusion_matrix(labels=range(C))``, rows true labels, columns
  predictions.

The report takes hard predictions: the caller decides how ties between equal scores are broken.
mmkit's callers use ``probs.argmax(1)``, which picks the first (lowest-index) maximal class, as
``numpy.argmax`` does.
"""

from __future__ import annotations

from typing import Any

import torch

from mmkit.errors import UserInputError


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[num_classes, num_classes]`` counts; rows are true labels, columns predictions."""
    idx = targets.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def _check_indices(name: str, values: torch.Tensor, num_classes: int) -> None:
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
        raise UserInputError(f"{name} must be class indices in [0, {num_classes})")


def classification_report(
    targets: torch.Tensor, preds: torch.Tensor, labels: list[str]
) -> dict[str, Any]:
    """The eval JSON of docs/design.md: accuracy, macro_f1, per_class, confusion_matrix.

    Args:
        targets: ``[N]`` true class indices.
        preds: ``[N]`` predicted class indices (ties already broken by the caller).
        labels: the class names, index ``i`` naming class ``i``.

    Raises:
        UserInputError: no items, shapes that differ, or indices outside ``[0, len(labels))``.
    """
    targets = torch.as_tensor(targets).reshape(-1).long().cpu()
    preds = torch.as_tensor(preds).reshape(-1).long().cpu()
    if targets.shape != preds.shape:
        raise UserInputError(
            f"targets and predictions differ in length: {targets.numel()} vs {preds.numel()}"
        )
    n = int(targets.numel())
    if n == 0:
        raise UserInputError("no items to score: metrics need at least one prediction")
    num_classes = len(labels)
    _check_indices("targets", targets, num_classes)
    _check_indices("predictions", preds, num_classes)
    cm = confusion_matrix(targets, preds, num_classes)
    tp = cm.diag().double()
    support = cm.sum(1).double()
    predicted = cm.sum(0).double()
    zero = torch.zeros_like(tp)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), zero)
    recall = torch.where(support > 0, tp / support.clamp(min=1), zero)
    # 2tp / (2tp + fp + fn) = 2tp / (predicted + support): scikit-learn's F-score formula
    seen = (support + predicted) > 0  # labels in the targets or the predictions
    f1 = torch.where(seen, 2 * tp / (support + predicted).clamp(min=1), zero)
    return {
        "accuracy": float(tp.sum() / n),
        "macro_f1": float(f1[seen].mean()),
        "num_samples": n,
        "labels": list(labels),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
    }
