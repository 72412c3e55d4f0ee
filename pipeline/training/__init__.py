"""Training and fine-tuning the network (the command line is :mod:`pipeline.cli.train`).

- :mod:`~pipeline.training.run`: the training run (:func:`~pipeline.training.run.run_training`);
- :mod:`~pipeline.training.report`: its line per epoch, plot and ``training.json``;
- :mod:`~pipeline.training.cards`: the trained network's model card and weights files;
- :mod:`~pipeline.training.training_set`: training sets on disk (the paper's K15 format).
"""

__all__: list[str] = []
