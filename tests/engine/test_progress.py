"""The progress bar's epoch label: the real last epoch, never Lightning's ``-2`` of max_epochs=-1."""

from types import SimpleNamespace

import pytest

from sdnseg.engine.callbacks import EpochProgressBar, last_epoch


def _trainer(max_epochs=None, max_steps=-1, batches=6, accumulate=1):
    return SimpleNamespace(
        max_epochs=max_epochs,
        max_steps=max_steps,
        num_training_batches=batches,
        accumulate_grad_batches=accumulate,
    )


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        (_trainer(max_epochs=-1, max_steps=30), 4),  # 30 steps of 6 per epoch: epochs 0..4
        (_trainer(max_epochs=-1, max_steps=31), 5),
        (_trainer(max_epochs=3, max_steps=100), 2),  # whichever ends the run first
        (_trainer(max_epochs=-1, max_steps=30, accumulate=2), 9),  # 3 steps per epoch
        (_trainer(max_epochs=-1, max_steps=-1), None),  # unbounded
        (_trainer(max_epochs=-1, max_steps=30, batches=float("inf")), None),  # iterable data
    ],
)
def test_last_epoch(trainer, expected):
    assert last_epoch(trainer) == expected


def test_bar_label_has_the_real_epoch_count_or_none():
    bar = EpochProgressBar()
    bar._trainer = _trainer(max_epochs=-1, max_steps=30)
    assert bar._get_train_description(2).strip() == "Epoch 2/4"
    bar._trainer = _trainer(max_epochs=-1, max_steps=-1)
    assert bar._get_train_description(2).strip() == "Epoch 2"
