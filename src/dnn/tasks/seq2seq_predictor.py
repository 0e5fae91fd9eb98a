"""The predictor of a trained sequence-to-sequence run (:mod:`dnn.tasks.seq2seq`): text in, text and attention out.

:func:`load_artifacts` reads back what the task saved (both tokenizers and vocabularies, the longest training
target and source); :class:`Seq2SeqPredictor` translates with greedy decoding or beam search
(:mod:`dnn.decoding`), gives the n best, and draws the attention of each output token over the source tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dnn.checks import int_in, number_in, positive_int
from dnn.data.batching import pad_batch
from dnn.data.tokenizers import Tokenizer
from dnn.data.vocab import Vocab
from dnn.decoding import beam_search, greedy
from dnn.device import model_device, to_device
from dnn.errors import CheckpointError, ConfigError, DataError
from dnn.io import UNK_ID
from dnn.rundir import TASK, RunDir
from dnn.tasks.base import AttentionHeatmap, Predictor
from dnn.tasks.options import MAX_BEAM_SIZE, Option

__all__ = ["MARGIN", "Seq2SeqPredictor", "load_artifacts"]

MARGIN = 10  # decoding may run this many tokens past the longest target before it is cut


def load_artifacts(run_dir: RunDir, src_size: int | None = None, tgt_size: int | None = None):
    """(source tokenizer, target tokenizer, source vocab, target vocab, longest training target) of a run."""
    info = run_dir.read_json(TASK, "a seq2seq run's task.json", required=("files", "max_target_length"))
    try:
        files, max_target = dict(info["files"]), int(info["max_target_length"])
        # inputs up to 4× the longest training source (runs saved before this was recorded: 1000 tokens)
        max_source = 4 * int(info["max_source_length"]) if "max_source_length" in info else 1000
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{run_dir.file(TASK)}: unreadable ({err})") from None
    try:
        src_vocab = Vocab.load(run_dir.file(str(files["source_vocab"])), expected_size=src_size)
        tgt_vocab = Vocab.load(run_dir.file(str(files["target_vocab"])), expected_size=tgt_size)
        src_tok = Tokenizer.load(run_dir.file(str(files["source_tokenizer"])))
        tgt_tok = Tokenizer.load(run_dir.file(str(files["target_tokenizer"])))
    except (DataError, KeyError) as err:
        raise CheckpointError(f"{run_dir.path}: {err}") from None
    return src_tok, tgt_tok, src_vocab, tgt_vocab, max_target, max_source


class Seq2SeqPredictor(Predictor):
    """A trained encoder–decoder with its tokenizers and vocabularies: text in, text (and attention) out."""

    kind = "translate"
    modality = "text"
    inputs = "texts"
    outputs = "the translation, its tokens and the attention of every output token"
    options = (
        Option("beam_size", int, 5, "hypotheses kept by the beam search (1: greedy decoding)", 1, MAX_BEAM_SIZE),
        Option("length_penalty", float, 0.6, "GNMT's α: longer outputs are favoured as it grows (0: none)", 0, 5),
        Option("n_best", int, 1, "how many of the beam's best translations to give", 1, MAX_BEAM_SIZE),
    )
    explains = "the attention of each output token over the source tokens"

    def __init__(
        self,
        model: nn.Module,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        src_vocab: Vocab,
        tgt_vocab: Vocab,
        max_target_length: int,
        max_source_length: int = 1000,
    ):
        self.model, self.src_tokenizer, self.tgt_tokenizer = model, src_tokenizer, tgt_tokenizer
        self.src_vocab, self.tgt_vocab, self.max_target_length = src_vocab, tgt_vocab, max_target_length
        self.max_source_length = max_source_length

    def count_tokens(self, text: str) -> int:
        return len(self.src_tokenizer.tokenize(text))

    def max_len(self, source_length: int) -> int:
        """The longest output decoded for a source of ``source_length`` tokens before it is cut."""
        return max(self.max_target_length, 2 * source_length) + MARGIN

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Source ids per text (an unknown token → <unk>); an empty text is a DataError."""
        ids = []
        for i, text in enumerate(texts):
            tokens = self.src_tokenizer.tokenize(text) if text.strip() else []
            if not tokens:
                raise DataError(f"empty input (text {i + 1} of {len(texts)}): nothing to translate")
            if len(tokens) > self.max_source_length:
                raise DataError(
                    f"input {i + 1} has {len(tokens):,} tokens; this model accepts at most {self.max_source_length:,} "
                    f"(4× the longest source it was trained on): split the text"
                )
            ids.append(self.src_vocab.encode(tokens))
        return ids

    def has_attention(self) -> bool:
        """Whether the model attends over the source (its ``decode_step`` returns weights, not None)."""
        src, lengths = to_device((torch.tensor([[UNK_ID]]), torch.tensor([1])), model_device(self.model))  # (1, 1)
        self.model.eval()
        return greedy(self.model, src, lengths, max_len=1).attention is not None

    def check_together(self, options: dict[str, Any], given: set[str]) -> None:
        if "length_penalty" in given and options["beam_size"] == 1:
            raise ConfigError("--length-penalty applies to beam search; with --beam-size 1 (greedy) leave it out")
        if options["n_best"] > options["beam_size"]:
            raise ConfigError(f"--n-best {options['n_best']} needs --beam-size of at least {options['n_best']}, "
                              f"got {options['beam_size']}")  # fmt: skip

    def predict(self, inputs: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        rows = self.translate(inputs, **options)
        return [{"input": row["source"], **row} for row in rows]

    def text(self, row: dict[str, Any]) -> str:
        """The translation; with an n-best list, one ``rank<TAB>score<TAB>output`` line per translation."""
        if "alternatives" not in row:
            return row["output"]
        ranked = enumerate([row, *row["alternatives"]], 1)
        return "\n".join(f"{k}\t{alt['score']:.4f}\t{alt['output']}" for k, alt in ranked)

    def attention_lines(self, row: dict[str, Any]) -> list[str]:
        lines = []
        for token, weights in zip(row["output_tokens"], row["attention"]):
            best = max(range(len(weights)), key=weights.__getitem__) if weights else None
            aligned = row["source_tokens"][best] if best is not None else ""
            lines.append(f"  {token!r:>8} ← {aligned!r:<8} " + " ".join(f"{w:.2f}" for w in weights))
        return lines

    def explain(self, input: str, **options: Any) -> AttentionHeatmap:
        return self.attention_figure(input, f"input {input!r}")

    def attention_figure(self, text: str, what: str) -> AttentionHeatmap:
        """The greedy translation of ``text`` and its attention rows (an empty text: an empty heatmap that says
        so); a ConfigError for a model without attention."""
        if not text.strip():
            return AttentionHeatmap("attention", f"Attention: {what}", heading="(empty input)")
        row = self.translate([text], beam_size=1)[0]
        if not row["attention"]:
            raise ConfigError(f"this {self.what[2:]}'s model has no attention: there is no picture of it to draw")
        return AttentionHeatmap("attention", f"Attention: {what}", row["source_tokens"], row["output_tokens"],
                                row["attention"], heading=f"{row['source']!r} → {row['output']!r}")  # fmt: skip

    def translate(self, texts: Sequence[str], beam_size: int = 5, length_penalty: float = 0.6,
                  n_best: int = 1) -> list[dict[str, Any]]:  # fmt: skip
        """Translate ``texts``; beam 1 is greedy decoding. ``length_penalty`` is GNMT's α (Wu et al. 2016; 0 =
        none). ``n_best`` ≤ ``beam_size``: how many of the beam's finished hypotheses to return.

        Returns per text: ``source``, ``output`` (detokenised), ``source_tokens`` (as the model saw them, an
        unknown one as ``<unk>``), ``output_tokens`` (without <eos>) and ``attention``: one row per output token,
        the weights over the source tokens (each row sums to 1), or [] for a model without attention; with beam
        search also ``score`` (log p / lp(n)), and with ``n_best`` > 1 ``alternatives``: the next best as
        ``{"output", "output_tokens", "score"}``, best first.
        """
        positive_int("beam_size", beam_size)
        int_in("n_best", n_best, 1, beam_size, expected=f"an integer from 1 to beam_size={beam_size}")
        alpha = number_in("length_penalty (GNMT's α)", length_penalty, 0, 5)
        if isinstance(texts, str):
            texts = [texts]
        ids = self.encode(texts)
        self.model.eval()
        results: list[dict[str, Any]] = []
        for start in range(0, len(ids), 64):
            chunk = ids[start : start + 64]
            src, lengths, _ = pad_batch(chunk)  # (B, S), (B,)
            max_len = self.max_len(int(lengths.max()))
            for b, hyps in enumerate(self._search(src, lengths, beam_size, max_len, alpha, n_best)):
                (token_ids, attention, score), rest = hyps[0], hyps[1:]
                tokens = self.tgt_vocab.decode(token_ids, stop_at_eos=True)
                rows = [] if attention is None else attention[: len(tokens), : len(chunk[b])].tolist()  # (n, S_b)
                row = {
                    "source": texts[start + b],
                    "output": self.tgt_tokenizer.detokenize(tokens),
                    "source_tokens": self.src_vocab.decode(chunk[b]),
                    "output_tokens": tokens,
                    "attention": rows,
                }
                if score is not None:
                    row["score"] = score
                if rest:
                    row["alternatives"] = [self._alternative(t, sc) for t, _, sc in rest]
                results.append(row)
        return results

    def _alternative(self, token_ids: list[int], score: float | None) -> dict[str, Any]:
        tokens = self.tgt_vocab.decode(token_ids, stop_at_eos=True)
        return {"output": self.tgt_tokenizer.detokenize(tokens), "output_tokens": tokens, "score": score}

    def _search(self, src, lengths, beam_size, max_len, length_penalty, n_best=1
                ) -> list[list[tuple[list[int], Tensor | None, float | None]]]:  # fmt: skip
        """Per sentence, its hypotheses best first: output ids (possibly ending with <eos>), attention ``(L, S)`` or
        None, and the beam's score (None for greedy decoding)."""
        src, lengths = to_device((src, lengths), model_device(self.model))
        if beam_size == 1:
            result = greedy(self.model, src, lengths, max_len)  # tokens (B, L), attention (B, L, S)
            attention = result.attention
            return [[(row, None if attention is None else attention[b], None)]
                    for b, row in enumerate(result.tokens.tolist())]  # fmt: skip
        hyps = beam_search(self.model, src, lengths, beam_size, max_len, length_penalty, n_best)
        return [[(h.tokens.tolist(), h.attention, float(h.score)) for h in best] for best in hyps]
