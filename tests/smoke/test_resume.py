"""A run killed with SIGKILL at a random step and resumed equals an uninterrupted run: same per-step losses,
bit-identical final weights (CPU). Dropout and augmentation are on, so every RNG has to be restored right."""

from resume_check import check_sigkill_resume

ARGS = [
    "digits-lenet5",
    "train.epochs=2",
    "train.batch_size=64",
    "train.checkpoint_every=1",
    "train.log_every=1",
    "train.threads=1",
    "model.dropout=0.3",
    "data.augment=true",
]


def test_sigkill_at_a_random_step_then_resume_equals_an_uninterrupted_run(tmp_path):
    check_sigkill_resume(ARGS, tmp_path, steps=2 * 20)  # 1,257 training images / 64 per batch = 20 batches per epoch
