"""Every registered model: builds from a small config, runs forward and backward, every parameter gets a gradient.

The table below must cover ``list_models()``: a model registered without a small test configuration fails here.
"""

import pytest
import torch

from dnn.errors import ConfigError
from dnn.models import create_model, list_models, model_config

CNN_SMALL = dict(num_classes=3, in_channels=3, image_size=32)


def image_batch(channels=3, size=32):
    return (torch.randn(2, channels, size, size),)


def token_batch(vocab=20):
    tokens = torch.randint(4, vocab, (2, 6))
    return tokens, torch.tensor([6, 4])


SMALL = {
    "lenet5": (dict(num_classes=3, in_channels=1, image_size=8), lambda: image_batch(1, 8)),
    "mlp": (dict(num_classes=3, in_channels=1, image_size=8, hidden_sizes=[8, 8]), lambda: image_batch(1, 8)),
    "convnet": (dict(num_classes=3, in_channels=1, image_size=8, channels=[4, 4, 8]), lambda: image_batch(1, 8)),
    "alexnet": (CNN_SMALL, image_batch),
    "vgg11": (CNN_SMALL, image_batch),
    "vgg16": (CNN_SMALL, image_batch),
    "vgg16_bn": (CNN_SMALL, image_batch),
    "googlenet": (CNN_SMALL, image_batch),
    "resnet18": (CNN_SMALL, image_batch),
    "resnet34": (CNN_SMALL, image_batch),
    "resnet50": (CNN_SMALL, image_batch),
    "sequence_classifier": (
        dict(vocab_size=20, num_classes=3, embedding_size=8, hidden_size=8, bidirectional=True, pooling="attention"),
        token_batch,
    ),
    "sequence_tagger": (dict(vocab_size=20, num_classes=3, embedding_size=8, hidden_size=8), token_batch),
    "seq2seq": (
        dict(src_vocab_size=20, tgt_vocab_size=15, embedding_size=8, hidden_size=8, attention="concat"),
        lambda: (*token_batch(), torch.randint(4, 15, (2, 5))),
    ),
    "transformer_seq2seq": (
        dict(src_vocab_size=20, tgt_vocab_size=15, d_model=8, num_heads=2, feedforward_size=16),
        lambda: (*token_batch(), torch.randint(4, 15, (2, 5))),
    ),
    "language_model": (dict(vocab_size=20, embedding_size=8, hidden_size=8), lambda: (token_batch()[0],)),
    "sequence_regressor": (dict(input_size=2, hidden_size=8), lambda: (torch.randn(3, 5, 2),)),
    "speech_ctc": (
        dict(num_classes=5, n_mels=8, conv_channels=4, hidden_size=4),
        lambda: (torch.randn(2, 9, 8), torch.tensor([9, 6])),
    ),
    "caption_attention": (
        dict(vocab_size=14, channels=[4], feature_size=8, embedding_size=8, hidden_size=8),
        lambda: (torch.randn(2, 1, 8, 16), torch.randint(4, 14, (2, 4))),
    ),
    "video_cnn_lstm": (
        dict(num_classes=4, image_size=8, channels=[4], frame_features=8, hidden_size=8),
        lambda: (torch.randn(2, 3, 1, 8, 8),),
    ),
}


def test_the_table_covers_every_registered_model():
    assert sorted(SMALL) == list_models()
    assert len(list_models()) >= 13


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_runs_forward_and_backward_and_every_parameter_learns(name):
    torch.manual_seed(0)
    config, make_inputs = SMALL[name]
    model = create_model(name, model_config(name, **config))
    out = model(*make_inputs())
    logits = out[0] if isinstance(out, tuple) else out
    assert torch.isfinite(logits).all()
    (logits.float() ** 2).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not no_grad, f"{name}: parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", list_models())
def test_bad_arguments_are_one_line_errors_naming_the_argument(name):
    with pytest.raises(ConfigError, match=rf"model '{name}': unknown argument 'no_such_option'"):
        create_model(name, model_config(name, **SMALL[name][0], no_such_option=1))


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="unknown model 'resnet19'; did you mean 'resnet18'?"):
        model_config("resnet19")
