"""Token ids in and out of the models that read or write text: the check of an id tensor, a vocabulary's smallest
size, and the cross-entropy over padded targets.

The sequence classifier and tagger, seq2seq, the Transformer, the language model and the captioner share these::

    check_tokens("tgt_in", tgt_in, V)       an integer tensor (B, T) (or (B,)) of ids in [0, V − 1], else one line
    check_vocab_size("seq2seq: src_vocab_size", V, 4)   V ≥ 4: ids 0..3 are <pad>, <unk>, <sos>, <eos>
    token_cross_entropy(logits, targets)    mean −log p(y_t) over the real tokens; targets = IGNORE_INDEX at padding
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dnn.checks import int_in, positive_int
from dnn.errors import ConfigError

__all__ = ["IGNORE_INDEX", "check_tokens", "check_vocab_size", "token_cross_entropy"]

IGNORE_INDEX = -100  # targets at padded positions: no loss there
_ID_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_tokens(name: str, tokens: Tensor, vocab_size: int, dim: int = 2) -> None:
    """Raise a one-line ConfigError unless ``tokens`` is an integer tensor of rank ``dim`` with ids < vocab_size."""
    if not isinstance(tokens, Tensor) or tokens.dim() != dim or tokens.dtype not in _ID_DTYPES:
        got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        letters = "(B, T)" if dim == 2 else "(B,)"
        raise ConfigError(f"{name} must be an integer tensor of shape {letters}, got {got}")
    if tokens.numel():
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= vocab_size:
            raise ConfigError(f"{name} must hold ids in [0, {vocab_size - 1}] (the vocabulary), got [{lo}, {hi}]")


def check_vocab_size(name: str, value: object, minimum: int) -> int:
    """``value`` if it is a vocabulary size of at least ``minimum``: the first ids are the special tokens.

    ``name`` is the key as the user knows it (``"language_model: vocab_size"``); the ConfigError names it.
    """
    positive_int(name, value)
    ids = f"ids 0..{minimum - 1} are <pad>, <unk>, <sos>, <eos>"
    return int_in(name, value, minimum, expected=f"at least {minimum} ({ids})")


def token_cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX,
                        label_smoothing: float = 0.0) -> Tensor:  # fmt: skip
    """Mean cross-entropy over the real tokens: ``logits (..., V)``, ``targets (...)``; ``ignore_index`` = padding.

    ``label_smoothing`` ε (Szegedy et al. 2016): the target distribution is (1 − ε)·one-hot + ε/V, as torch's."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index,
                           label_smoothing=label_smoothing)  # fmt: skip
