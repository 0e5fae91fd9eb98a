"""Plain PyTorch scripts of the models dnn is measured against (``make bench``)."""
