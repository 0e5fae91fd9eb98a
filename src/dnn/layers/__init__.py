"""Layers written from the lecture's equations: recurrent cells and runners, attention, convolution blocks."""
