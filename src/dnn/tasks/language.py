"""Language modelling with truncated BPTT: a recurrent network over one long stream of text (the adding problem
lives in :mod:`dnn.tasks.adding`).

**Language modelling** (:class:`LanguageModelling`, ``data.task: language_model``): the text — the pydoc corpus
(``data.source: pydoc``) or a user's plain text file (``data.train=book.txt``) — becomes one stream of token ids
(characters by default; ``data.tokenizer: word`` marks each line end with ``<eos>``; ``bpe`` learns subwords on
the training split). The stream is cut into B = ``train.batch_size`` parallel streams and read in chunks of
k = ``data.length`` steps (:class:`~dnn.data.batching.StreamBatches`)::

    loss = −1/(B·k) Σ_b Σ_t log p(w_{b,t+1} | w_{b,≤t})        nats per token, over every position of the chunk
    s_0 = 0 at the start of each epoch;  s_i = detach(final state of chunk i) starts chunk i + 1

so the state carries the context of everything read before, while the gradient flows back k steps only
(:class:`CarriedState`). Evaluation reads the valid/test text the same way, the state carried: mean
cross-entropy per token (nats), perplexity = exp(loss), and bits per character = loss / ln 2 / (characters per
token) — for the character tokenizer simply loss / ln 2.

*Resuming.* The batch order is fixed by the stream layout, so a resumed run sees the same chunks. The carried
state lives in ``trainer.context``: a run resumed from a checkpoint taken at an epoch's end (the default,
``train.checkpoint_every=0``) is exact, since every epoch starts from a zero state anyway. For a checkpoint in the
middle of an epoch the task offers :meth:`LanguageModelling.checkpoint_context` (the state as plain tensors, for
``state.pt``) and :meth:`LanguageModelling.restore_context`; where the checkpoint holds it, :class:`CarriedState`
keeps the restored state and the resume is exact, and where it does not, the first chunk after the resume starts
from a zero state (logged), so the run then differs slightly from an uninterrupted one.

Shapes: B batch (streams), T time, k chunk length, E embedding, H hidden, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.checks import int_in, positive_int
from dnn.data.batching import StreamBatches, stream_batches
from dnn.data.corpus import pydoc_corpus
from dnn.data.splits import Splits
from dnn.data.text import read_text
from dnn.data.tokenizers import BPETokenizer, Tokenizer, make_tokenizer
from dnn.data.vocab import EOS_ID, SOS_ID, SPECIALS, UNK_ID, Vocab
from dnn.decoding import beam_search, sample
from dnn.device import model_device
from dnn.errors import ConfigError, DataError
from dnn.models.language import LMState
from dnn.models.regression import SequenceRegressor, SequenceRegressorConfig
from dnn.models.token_ids import token_cross_entropy
from dnn.rundir import TASK, TOKENIZER, VOCAB, RunDir
from dnn.tasks.adding import AddingPredictor, AddingProblem  # re-exported: the adding problem lived here
from dnn.tasks.base import Predictor, Task
from dnn.tasks.options import (
    MAX_BEAM_SIZE,
    MAX_GENERATE,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_TOP_K,
    MIN_TEMPERATURE,
    MIN_TOP_P,
    Option,
)
from dnn.tasks.registry import register_task
from dnn.training import metrics
from dnn.training.callbacks import TruncatedBPTT, detach_state
from dnn.training.memory import BatchPlan

__all__ = [
    "AddingPredictor",
    "AddingProblem",
    "CarriedState",
    "LanguageModelling",
    "SequenceRegressor",
    "SequenceRegressorConfig",
    "TextGenerator",
    "encode_text",
    "stream_nll",
]


# --------------------------------------------------------------------------------------------------------------
# Text ↔ one stream of token ids
# --------------------------------------------------------------------------------------------------------------


def encode_text(text: str, tokenizer: Tokenizer, vocab: Vocab) -> list[int]:
    """The token ids of ``text`` as one stream (unknown tokens → ``<unk>``).

    The character and BPE tokenizers keep line breaks as tokens. The word tokenizer drops all whitespace, so
    every ``\\n`` becomes ``<eos>`` (as in PyTorch's word_language_model example): ``"a b\\nc"`` → a b <eos> c.
    """
    if tokenizer.kind != "word":
        return vocab.encode(tokenizer.tokenize(text))
    lines = text.split("\n")
    ids: list[int] = []
    for line in lines[:-1]:
        ids += vocab.encode(tokenizer.tokenize(line)) + [EOS_ID]
    return ids + vocab.encode(tokenizer.tokenize(lines[-1]))


def decode_text(ids: list[int], tokenizer: Tokenizer, vocab: Vocab) -> str:
    """Text of generated ids: the inverse of :func:`encode_text` (``<eos>`` → ``\\n`` for the word tokenizer)."""
    if tokenizer.kind != "word":
        return tokenizer.detokenize(vocab.decode(ids))
    lines, line = [], []
    for i in ids:
        if i == EOS_ID:
            lines.append(tokenizer.detokenize(line))
            line = []
        else:
            line += vocab.decode([i])
    return "\n".join([*lines, tokenizer.detokenize(line)])


@torch.no_grad()
def stream_nll(model: nn.Module, ids: Tensor, streams: int, bptt: int, carry: bool = True) -> tuple[float, int]:
    """Summed cross-entropy (nats) and the number of predicted tokens, reading ``ids (N,)`` as ``streams``
    parallel streams in chunks of ``bptt`` steps; ``carry=False`` restarts every chunk from a zero state."""
    total, count, state = 0.0, 0, None
    device = model_device(model)
    for inputs, targets in stream_batches(ids, streams, bptt):  # (B, k), (B, k)
        logits, state = model(inputs.to(device), state if carry else None)  # (B, k, V)
        total += F.cross_entropy(logits.flatten(0, 1).float(), targets.to(device).flatten(), reduction="sum").item()
        count += targets.numel()
    return total, count


class CarriedState(TruncatedBPTT):
    """:class:`~dnn.training.callbacks.TruncatedBPTT` that resets the state only at the start of a *fresh* epoch.

    A run resumed in the middle of an epoch (``trainer.stats.batch_in_epoch > 0``) keeps whatever state the
    trainer restored with its checkpoint; when there is none, its first chunk starts from zeros, and ``log``
    says so once.
    """

    def __init__(self, log=None):
        self.log = log

    def on_epoch_start(self, trainer, epoch):
        if trainer.stats.batch_in_epoch == 0:
            trainer.context["state"] = None
        elif trainer.context.get("state") is None and self.log is not None:
            self.log(
                f"resumed at chunk {trainer.stats.batch_in_epoch + 1} of epoch {epoch + 1}: the carried hidden state "
                f"is not in the checkpoint, so this chunk starts from a zero state"
            )


# --------------------------------------------------------------------------------------------------------------
# Language modelling
# --------------------------------------------------------------------------------------------------------------


def _make_tokenizer(data) -> Tokenizer:
    options: dict[str, Any] = {"lowercase": data.lowercase}
    if data.tokenizer == "bpe":
        options["vocab_size"] = data.vocab_size
    try:
        return make_tokenizer(data.tokenizer, **options)
    except ConfigError as err:  # "vocab_size must be an int ≥ 256" → "data.vocab_size must be ..."
        raise ConfigError(f"data.{err}") from None


MAX_PROMPT_CHARS = 100_000


@register_task("language_model")
class LanguageModelling(Task):
    """A text as B parallel streams read in chunks of k = ``data.length`` tokens; see the module docstring."""

    monitor = ("loss", "min")

    builtin_data: ClassVar[dict[str, str]] = {
        "language_model": "data.source: pydoc (the English text of Python's own documentation)"
    }

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bptt = cfg.data.length
        positive_int("data: length (the BPTT length k)", self.bptt)
        self.log = None
        self.tokenizer: Tokenizer | None = None
        self.vocab: Vocab | None = None
        self.ids: dict[str, Tensor] = {}
        self.chars_per_token: dict[str, float] = {}
        self.stream: StreamBatches | None = None
        self.source = ""

    # -- data --------------------------------------------------------------------------------------------------

    def _texts(self) -> Splits[str]:
        data = self.cfg.data
        if data.source is not None:
            if data.source != "pydoc":
                raise ConfigError(f"data.source for a language model must be 'pydoc', got {data.source!r}")
            if data.train:
                raise ConfigError("give either data.source=pydoc or data.train=FILE for a language model, not both")
            self.source = "pydoc corpus"
            fractions = (1.0 - data.valid_fraction - data.test_fraction, data.valid_fraction, data.test_fraction)
            return pydoc_corpus(seed=self.cfg.seed, fractions=fractions)
        if not data.train:
            raise DataError("data.train must name a plain text file (or set data.source=pydoc)")
        self.source = data.train
        text = read_text(data.train)
        if data.valid or data.test:
            return Splits(text, read_text(data.valid) if data.valid else "", read_text(data.test) if data.test else "")
        # contiguous ranges: the first part trains, the next is validation, the last is test
        n = len(text)
        a = round(n * (1.0 - data.valid_fraction - data.test_fraction))
        b = round(n * (1.0 - data.test_fraction))
        return Splits(text[:a], text[a:b], text[b:])

    def prepare(self, log) -> None:
        self.log = log
        data, batch_size = self.cfg.data, self.cfg.train.batch_size
        texts = self._texts()
        self.tokenizer = _make_tokenizer(data)
        if isinstance(self.tokenizer, BPETokenizer):
            self.tokenizer.train([texts.train])
        max_size = data.vocab_size if data.tokenizer == "word" else None
        train_tokens = self.tokenizer.tokenize(texts.train)
        self.vocab = Vocab.build([train_tokens], min_freq=data.min_freq, max_size=max_size)
        for split, text in texts.as_dict().items():
            ids = torch.tensor(encode_text(text, self.tokenizer, self.vocab), dtype=torch.int64)  # (N,)
            self.ids[split] = ids
            self.chars_per_token[split] = len(text) / max(len(ids), 1)
        n = len(self.ids["train"])
        if n < 2 * batch_size:
            raise DataError(
                f"{self.source}: the training split has {n} tokens, too few for train.batch_size={batch_size} "
                f"parallel streams (needs at least {2 * batch_size}); give more text or a smaller train.batch_size"
            )
        self.stream = stream_batches(self.ids["train"], batch_size, self.bptt)
        sizes = ", ".join(f"{split} {len(ids):,}" for split, ids in self.ids.items())
        log(
            f"data: {self.source}, {data.tokenizer} tokens ({sizes}), vocabulary {len(self.vocab)}; "
            f"{batch_size} streams × {self.stream.streams.shape[1]:,} tokens, BPTT k={self.bptt}: "
            f"{len(self.stream)} chunks per epoch"
        )

    def prepare_evaluation(self, run_dir: RunDir, path: str, log) -> None:
        """A trained run's tokenizer and vocabulary, and the plain text file ``path`` as the test split
        (``dnn eval RUN --data FILE``): its perplexity under the model."""
        self.tokenizer = Tokenizer.load(run_dir.file(TOKENIZER))
        self.vocab = Vocab.load(run_dir.file(VOCAB))
        text = read_text(path)
        ids = torch.tensor(encode_text(text, self.tokenizer, self.vocab), dtype=torch.int64)  # (N,)
        if len(ids) < 2:
            raise DataError(f"{path}: too little text to evaluate (needs at least 2 tokens)")
        self.ids["test"], self.chars_per_token["test"] = ids, len(text) / len(ids)
        log(f"data: {path}, {len(ids):,} {self.tokenizer.kind} tokens")

    def model_options(self) -> dict[str, Any]:
        return {"vocab_size": len(self.vocab)}

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The chunks ``(inputs (B, k), targets (B, k))`` in stream order: the same every epoch, by design."""
        return iter(self.stream)

    def batches_per_epoch(self) -> int:
        return len(self.stream)

    def batch_plan(self) -> BatchPlan:
        """B streams × chunks of k tokens (the whole stream, where it is shorter than ``data.length``)."""
        B, L = self.stream.streams.shape

        def make(size: int, length: int) -> tuple[Tensor, Tensor]:
            return torch.zeros(size, length, dtype=torch.int64), torch.zeros(size, length, dtype=torch.int64)

        return BatchPlan(B, min(self.bptt, L - 1), make, ("data.length", "train.batch_size"))

    def callbacks(self) -> list:
        return [CarriedState(self.log)]

    def checkpoint_context(self, context: dict) -> dict[str, Any]:
        """What of ``trainer.context`` a checkpoint must hold for an exact resume mid-epoch: the carried state, as
        plain tensors (``(L, B, H)``, a tuple ``(h, c)`` for the LSTM) that ``torch.load(weights_only=True)`` reads."""
        state = detach_state(context.get("state"))
        return {"state": None if state is None else state.hidden}

    def restore_context(self, context: dict, saved: dict[str, Any] | None) -> None:
        """Put a :meth:`checkpoint_context` back into ``trainer.context`` (nothing saved: a zero state)."""
        hidden = (saved or {}).get("state")
        context["state"] = None if hidden is None else LMState(tuple(hidden) if isinstance(hidden, list) else hidden)

    # -- training and evaluation -------------------------------------------------------------------------------

    @staticmethod
    def step(model: nn.Module, batch, context) -> tuple[Tensor, int]:
        """Cross-entropy over every position of the chunk, from the carried state (zeros when there is none).

        The incoming state is detached here as well as by :class:`CarriedState`, so that a batch the trainer
        skipped (non-finite gradient) never leaves its freed graph attached to the next one.
        """
        inputs, targets = batch  # (B, k), (B, k)
        logits, state = model(inputs, detach_state(context.get("state")))  # (B, k, V)
        context["state"] = state
        return token_cross_entropy(logits, targets), inputs.numel()

    def evaluate(self, model: nn.Module, split: str = "valid", carry: bool = True) -> dict[str, float]:
        """Loss (nats per token), perplexity and bits per character on ``split``, the state carried across chunks.

        The split is read as min(B, N // 2) parallel streams (B = ``train.batch_size``); ``carry=False`` resets
        the state at every chunk (what truncated BPTT would lose without carrying it).
        """
        ids = self.ids.get(split)
        if ids is None or len(ids) < 2:
            return {}
        streams = min(self.cfg.train.batch_size, len(ids) // 2)
        total, count = stream_nll(model, ids, streams, self.bptt, carry)
        loss = total / count
        return {
            "loss": loss,
            "perplexity": metrics.perplexity(total, count),
            "bits_per_char": loss / math.log(2) / self.chars_per_token[split],
        }

    # -- artefacts saved with the run, and generation ----------------------------------------------------------

    def save_artifacts(self, run_dir: RunDir) -> None:
        self.vocab.save(run_dir.output(VOCAB))
        self.tokenizer.save(run_dir.output(TOKENIZER))
        train = self.ids["train"]
        present = torch.bincount(train[1:], minlength=len(SPECIALS))[: len(SPECIALS)] > 0
        start = encode_text("\n", self.tokenizer, self.vocab)
        info = {
            "task": "LanguageModelling",
            "tokenizer": self.tokenizer.kind,
            "bptt": self.bptt,
            # an empty prompt starts after a line break; <sos> where the training text had none
            "start": start if start and UNK_ID not in start else [SOS_ID],
            # special tokens that never were a training target are never generated
            "banned": [i for i in range(len(SPECIALS)) if not present[i]],
        }
        run_dir.write_json(TASK, info)

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> TextGenerator:
        info = run_dir.read_json(TASK, "a language model run's task.json", required=("start", "banned"))
        start, banned = list(info["start"]), list(info["banned"])
        vocab = Vocab.load(run_dir.file(VOCAB), expected_size=model.config.vocab_size)
        return TextGenerator(model, Tokenizer.load(run_dir.file(TOKENIZER)), vocab, start, banned)


class _Banned:
    """``model.decode_step`` with the logits of ``banned`` ids at −∞, so they are never chosen."""

    def __init__(self, model: nn.Module, banned: list[int]):
        self.model, self.banned = model, banned

    def encode(self, prompt: Tensor, lengths: Tensor | None = None) -> LMState:
        """The state after ``prompt (1, P)`` but its last token (beam search feeds that one first)."""
        if prompt.shape[1] > 1:
            return self.model(prompt[:, :-1])[1]
        return self.model.init_state(prompt.shape[0])

    def decode_step(self, prev_token: Tensor, state: LMState | None):
        logits, state, attention = self.model.decode_step(prev_token, state)  # (B, V)
        return (
            logits.index_fill(-1, torch.tensor(self.banned, dtype=torch.int64, device=logits.device), float("-inf")),
            state,
            attention,
        )


class TextGenerator(Predictor):
    """A trained language model with its tokenizer and vocabulary: continues a prompt."""

    kind = "generate"
    modality = "text"
    inputs = "prompts (an empty one starts a new line)"
    outputs = "the prompt and its continuation"
    options = (
        Option("length", int, 200, "tokens to generate", 1, MAX_GENERATE),
        Option("temperature", float, 0.8, "sampling temperature (0: the most likely token)", MIN_TEMPERATURE,
               MAX_TEMPERATURE, zero=True),
        Option("top_k", int, None, "sample among the k most likely tokens only", 1, MAX_TOP_K),
        Option("top_p", float, None, "sample among the most likely tokens whose probabilities sum to p", MIN_TOP_P, 1),
        Option("seed", int, 0, "seed of the sampling", 0, MAX_SEED),
        Option("beam_size", int, 1, "search for the most likely continuation with this many beams (1: sample)", 1,
               MAX_BEAM_SIZE),
    )  # fmt: skip

    def check_together(self, options: dict[str, Any], given: set[str]) -> None:
        sampling = [
            o.flag for o in self.options if o.name in ("temperature", "top_k", "top_p", "seed") and o.name in given
        ]
        if options["beam_size"] > 1 and sampling:
            raise _not_sampling(sampling, f"--beam-size {options['beam_size']} searches instead", "--beam-size")
        cut = [o.flag for o in self.options if o.name in ("top_k", "top_p") and o.name in given]
        if options["temperature"] == 0 and cut:
            raise _not_sampling(cut, "--temperature 0 takes the most likely token", "give a temperature above 0")

    def predict(self, inputs: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        return [{"input": prompt, "text": self.generate(prompt, **options)} for prompt in inputs]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.tokenize(text))

    def text(self, row: dict[str, Any]) -> str:
        return row["text"]

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, vocab: Vocab, start: list[int], banned: list[int]):
        self.model, self.tokenizer, self.vocab, self.start, self.banned = model, tokenizer, vocab, start, banned

    def generate(self, prompt: str = "", length: int = 200, temperature: float = 0.8, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, beam_size: int = 1) -> str:  # fmt: skip
        """``prompt`` followed by ``length`` generated tokens (``temperature`` 0: greedy, so deterministic).

        The prompt is encoded with the run's tokenizer and vocabulary (unknown characters → ``<unk>``). A prompt
        without tokens (empty) starts as after a line break — the line-break token, ``<eos>`` for the word
        tokenizer, ``<sos>`` if the training text had no line break — which is not part of the returned text.
        Special tokens never seen as training targets are never generated. Sampling draws from a generator
        seeded with ``seed``. ``beam_size`` > 1 searches for the most likely continuation of ``length`` tokens
        with a beam instead of sampling (temperature, top-k and top-p do not apply then).
        """
        int_in("beam_size", beam_size, 1, MAX_BEAM_SIZE)
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt must be a str, got {type(prompt).__name__}")
        int_in("length", length, 1, MAX_GENERATE, expected=f"an integer in [1, {MAX_GENERATE:,}] (tokens to generate)")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise DataError(f"the prompt has {len(prompt):,} characters; at most {MAX_PROMPT_CHARS:,}")
        ids = encode_text(prompt, self.tokenizer, self.vocab) or list(self.start)  # "" (or only spaces, for words)
        device = model_device(self.model)
        tokens = torch.tensor([ids], dtype=torch.int64, device=device)  # (1, P)
        self.model.eval()
        with torch.no_grad():
            _, state = self.model(tokens[:, :-1]) if tokens.shape[1] > 1 else (None, None)  # the prompt but its last
            generator = torch.Generator(device=device).manual_seed(seed)
            if beam_size > 1:
                best = beam_search(_Banned(self.model, self.banned), tokens, None, beam_size, length,
                                   sos_id=int(tokens[0, -1]), eos_id=EOS_ID)[0][0]  # fmt: skip
                new = best.tokens.unsqueeze(0)  # (1, n ≤ length)
            else:
                new = sample(_Banned(self.model, self.banned), tokens[:, -1:], length, temperature, top_k, top_p,
                             generator, state=state)  # fmt: skip  # (1, length)
        text = decode_text(new[0].tolist(), self.tokenizer, self.vocab)
        if self.tokenizer.kind == "word" and prompt and not prompt[-1].isspace() and not text.startswith("\n"):
            text = " " + text
        return prompt + text


SAMPLING = ("temperature", "top_k", "top_p", "seed")  # the options of sampling, not of a beam search


def _not_sampling(flags: list[str], because: str, instead: str) -> ConfigError:
    """``--top-k applies to sampling; <because> (leave out --top-k, or <instead>)``."""
    names = " and ".join(flags)
    verb = "applies" if len(flags) == 1 else "apply"
    return ConfigError(f"{names} {verb} to sampling; {because} (leave out {names}, or {instead})")
