"""Training the Morpheus network (paper section 3).

- :mod:`~morpheus_core.training.losses`: class-weighted cross entropy (Eq. 5-9), the
  Dice loss on the background logit (Eq. 10) and their sum (Eq. 11).
- :mod:`~morpheus_core.training.augment`: rotation, flips and crops of section 3.2,
  images and targets transformed together.
- :mod:`~morpheus_core.training.data`: expert votes to per-pixel targets (section
  3.1, the ``unknown`` class) and a synthetic training set from the simulator.
- :mod:`~morpheus_core.training.metrics`: pixel accuracy (Eq. 14) and background
  intersection-over-union (Eq. 15).
- :mod:`~morpheus_core.training.fit`: the seeded training loop (Adam, Table 2), with
  its hyper-parameters in :mod:`~morpheus_core.training.settings` (no Keras).

Plain functions on NumPy arrays and Keras models; reading and writing training sets,
logs and weights files is done by :mod:`pipeline.cli.train`. Each name is
imported from its module (``from morpheus_core.training.losses import morpheus_loss``).
"""

__all__: list[str] = []
