"""Layers written from the lecture's equations: recurrent cells and runners, attention, convolution blocks."""

from dnn.layers.attention import Attention
from dnn.layers.conv import BasicBlock, Bottleneck, ConvBNAct, Inception, conv_output_size, pool_output_size
from dnn.layers.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Attention",
    "BasicBlock",
    "Bottleneck",
    "ConvBNAct",
    "GRUCell",
    "Inception",
    "LSTMCell",
    "RNNCell",
    "conv_output_size",
    "pool_output_size",
]
