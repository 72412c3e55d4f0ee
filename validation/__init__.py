"""The paper's own tests of the trained network (section 7), on simulated images.

One script per test, each printing a table and saving a PNG and an ECSV table:

- ``python -m validation.false_positives``: 7.2.1, single-band H fluctuations;
- ``python -m validation.false_negatives``: 7.2.2, point sources in all bands;
- ``python -m validation.sersic``: 7.3, dominant class against Sersic index and radius.

``--reduced`` runs a small grid (the test suite runs every script that way);
``--weights FILE`` validates a trained ``.weights.h5`` instead of the released weights.
Results and their comparison with the paper: ``docs/validation.md``.
"""
