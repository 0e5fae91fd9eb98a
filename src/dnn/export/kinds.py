"""Which runs ``dnn export`` takes, by the class of the run's predictor: a table from predictor class to
:class:`~dnn.export.graphs.Exporter`, looked up along the class's MRO (a subclass exports as its base does), and the
predictors it refuses, each with the reason it says in one line."""

from __future__ import annotations

from dnn.errors import ConfigError
from dnn.export.captioning import CAPTION
from dnn.export.classifiers import CLASSIFY, IMAGE, TAG, VIDEO
from dnn.export.graphs import Exporter
from dnn.export.seq2seq import SEQ2SEQ
from dnn.run import LoadedRun
from dnn.tasks.base import PREDICTOR_KINDS, Predictor
from dnn.tasks.captioning import CaptionPredictor
from dnn.tasks.images import ImagePredictor
from dnn.tasks.language import AddingPredictor, TextGenerator
from dnn.tasks.seq2seq import Seq2SeqPredictor
from dnn.tasks.speech import SpeechPredictor
from dnn.tasks.text_predictors import TaggingPredictor, TextClassifierPredictor
from dnn.tasks.video import VideoPredictor

__all__ = ["EXPORTERS", "REFUSED", "exportable", "exporter_for"]

EXPORTERS: dict[type[Predictor], Exporter] = {
    ImagePredictor: IMAGE,
    TextClassifierPredictor: CLASSIFY,
    TaggingPredictor: TAG,
    Seq2SeqPredictor: SEQ2SEQ,
    CaptionPredictor: CAPTION,
    VideoPredictor: VIDEO,
}

REFUSED: dict[type[Predictor], str] = {
    TextGenerator: "a language model writes by sampling one token at a time from a carried state (temperature, "
    "top-k), and that step has no exported graph layout yet; use dnn generate, load_run or dnn serve",
    SpeechPredictor: "its log-mel features are computed from the audio outside the model and its CTC output needs a "
    "decoder (collapse repeats, prefix beam search); neither has an exported layout yet; use dnn transcribe, "
    "load_run or dnn serve",
    AddingPredictor: "a regression run is the adding problem, a lecture experiment on synthetic sequences with "
    "nothing to deploy; use load_run",
}


def exportable() -> str:
    """The runs dnn export takes, in words: "an image classification run, a text classification run, ..."."""
    return ", ".join(PREDICTOR_KINDS[cls.kind] for cls in EXPORTERS)


def exporter_for(run: LoadedRun) -> Exporter:
    """The exporter of the run's predictor class (or of the nearest base class that has one); a one-line
    ConfigError saying why for a run that cannot be exported."""
    classes = type(run.predictor).__mro__
    found = next((EXPORTERS[cls] for cls in classes if cls in EXPORTERS), None)
    if found is not None:
        return found
    why = next((REFUSED[cls] for cls in classes if cls in REFUSED), "dnn export has no graphs for its predictor")
    raise ConfigError(
        f"{run.path}: dnn export takes {exportable()}; this is {PREDICTOR_KINDS[run.predictor.kind]}, which it "
        f"cannot export: {why}"
    )
