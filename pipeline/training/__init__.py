"""``python -m pipeline train``: train or fine-tune the network.

- :mod:`~pipeline.training.command`: the command (options, exit codes, ``train.log``);
- :mod:`~pipeline.training.run`: the training run (:func:`~pipeline.training.run.run_training`);
- :mod:`~pipeline.training.report`: its line per epoch, plot and ``training.json``;
- :mod:`~pipeline.training.cards`: the trained network's model card and weights files;
- :mod:`~pipeline.training.training_set`: training sets on disk (the paper's K15 format).
"""

__all__: list[str] = []
