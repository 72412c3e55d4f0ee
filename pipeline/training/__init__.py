"""``python -m pipeline train``: train or fine-tune the network.

- :mod:`~pipeline.training.command`: the command and the training run;
- :mod:`~pipeline.training.training_set`: training sets on disk (the paper's K15 format).
"""

__all__: list[str] = []
