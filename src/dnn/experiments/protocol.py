"""An experiment's protocol beside its paper's, as data: what each side trained on, with what, for how long, how
many times, on what hardware, and what counted as success — each difference named.

Every experiment declares one :class:`Protocol` next to its code (``@experiment(..., protocol=PROTOCOL)``); the
results.md it writes renders it as a table (:func:`markdown`), so a rerun regenerates it, and the experiments'
index says when the protocol changed since the last full run (:func:`fingerprint`)::

    PROTOCOL = Protocol(
        paper="Arjovsky, Shah & Bengio 2016",
        data=Row("100,000 training sequences, T = 100–750", "100,000, T = 200", "none"),
        ...,
        remaining="none",
    )

A :class:`Row` names the paper's choice, ours, and the difference ("none" when there is none); ``decisive`` marks
a difference that could decide the verdict — one this machine cannot close, said so in ``difference``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

__all__ = ["ASPECTS", "Protocol", "Row", "fingerprint", "markdown", "missing"]

# the aspects every protocol compares, in the order of the table, with their row titles
ASPECTS = {
    "data": "data size",
    "model": "model size",
    "budget": "budget (updates, examples seen)",
    "optimiser": "optimiser",
    "seeds": "seeds",
    "parallelism": "hardware parallelism",
    "criterion": "success criterion",
}
NONE = "none"


@dataclass(frozen=True)
class Row:
    """One aspect of the protocol: the paper's choice, ours, and the difference between them ("none")."""

    paper: str
    ours: str
    difference: str = NONE
    decisive: bool = False  # the difference could decide the verdict


@dataclass(frozen=True)
class Protocol:
    """The paper(s) an experiment follows, its seven aspects beside the paper's, and the one-line difference that
    remains (``"none"`` when the protocol is the paper's in everything that could decide the verdict)."""

    paper: str
    data: Row
    model: Row
    budget: Row
    optimiser: Row
    seeds: Row
    parallelism: Row
    criterion: Row
    remaining: str = NONE

    def rows(self) -> list[tuple[str, Row]]:
        return [(title, getattr(self, aspect)) for aspect, title in ASPECTS.items()]


def missing(protocol: Protocol | None) -> list[str]:
    """What a protocol leaves out: empty fields, a difference marked decisive that names nothing, a remaining
    difference longer than one line. Empty: the protocol is complete."""
    if protocol is None:
        return ["no protocol declared"]
    gaps = [f"{f.name} is empty" for f in fields(Protocol) if not str(getattr(protocol, f.name)).strip()]
    for aspect in ASPECTS:
        row = getattr(protocol, aspect)
        if not isinstance(row, Row):
            gaps.append(f"{aspect} is not a Row")
            continue
        gaps += [f"{aspect}.{name} is empty" for name in ("paper", "ours", "difference")
                 if not getattr(row, name).strip()]  # fmt: skip
        if row.decisive and row.difference.strip() == NONE:
            gaps.append(f"{aspect} is marked decisive but names no difference")
    if "\n" in protocol.remaining:
        gaps.append("remaining is more than one line")
    return gaps


def fingerprint(protocol: Protocol) -> str:
    """12 hex digits of SHA-256 over the protocol's content: a results.md measured under another protocol (or
    other expectations, which the criterion row states) carries another fingerprint."""
    text = json.dumps(asdict(protocol), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def markdown(protocol: Protocol) -> str:
    """The protocol as the "Protocol" section of a results.md: a table of the seven aspects, paper beside ours,
    each difference named (bold where it could decide the verdict), and the difference that remains."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        f"Follows {protocol.paper}. Each difference from the paper is named; **bold**: one that could decide the "
        f"verdict.",
        "",
        "| aspect | paper | ours | difference |",
        "|---|---|---|---|",
    ]
    for title, row in protocol.rows():
        difference = f"**{cell(row.difference)}**" if row.decisive else cell(row.difference)
        lines.append(f"| {title} | {cell(row.paper)} | {cell(row.ours)} | {difference} |")
    remaining = protocol.remaining if protocol.remaining != NONE else "none that could decide the verdict"
    lines += ["", f"Remaining difference from the paper: {remaining}.", "",
              f"Protocol fingerprint: `{fingerprint(protocol)}`."]  # fmt: skip
    return "\n".join(lines)
