"""Tasks: what turns a kind of data into batches, a loss, metrics and predictions (the trainer knows none of it)."""
