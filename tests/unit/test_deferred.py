"""A model built on the meta device and materialised holds, bit for bit, the weights a direct build holds, for every
registered model, and leaves the random generator where a direct build leaves it: a run's one build (the memory
check reads it before anything is allocated) changes no number a run trains."""

from __future__ import annotations

import pytest
import torch
from test_registry import SMALL

from dnn.models import create_model, list_models, model_config
from dnn.models.deferred import Deferred


@pytest.mark.parametrize("name", list_models())
def test_a_deferred_build_materialises_the_weights_of_a_direct_build(name):
    config = model_config(name, **SMALL[name][0])
    torch.manual_seed(3)
    direct = create_model(name, config)
    after_direct = torch.rand(4)
    torch.manual_seed(3)
    deferred = Deferred(lambda: create_model(name, config))
    assert all(p.is_meta for p in deferred.model.parameters())
    model = deferred.materialise()
    assert model is deferred.model  # the same modules, their tensors now real
    assert torch.equal(torch.rand(4), after_direct)
    ours, theirs = model.state_dict(), direct.state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key].device.type == "cpu" and torch.equal(ours[key], theirs[key]), key
    assert [p.requires_grad for p in model.parameters()] == [p.requires_grad for p in direct.parameters()]


def test_tied_weights_stay_tied_and_a_second_materialisation_is_refused():
    config = model_config("language_model", vocab_size=12, embedding_size=8, hidden_size=8, tie_weights=True)
    deferred = Deferred(lambda: create_model("language_model", config))
    model = deferred.materialise()
    assert model.output.weight is model.embedding.weight
    with pytest.raises(RuntimeError, match="materialised once"):
        deferred.materialise()
