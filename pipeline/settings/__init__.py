"""Settings: one typed object per command, each default, choice and help text
written once on a dataclass field (:func:`~pipeline.settings.fields.setting`).

The command line is generated from these fields (:mod:`pipeline.cli.options`), and a
run's manifest records them.

- :class:`RunSettings`: ``run`` (and what ``resubmit`` reads back);
- :class:`DownstreamSettings`: segmentation, deblending and the catalog (``run``,
  ``segment``, ``catalog``, ``resubmit``);
- :class:`ViewSettings`: ``view``;
- :class:`TrainRunSettings`: ``train``'s data, output folder and set-up;
- :class:`TrainSettings`: ``train``'s hyper-parameters (defined beside the training
  code in :mod:`morpheus_core.training.settings`, which knows no pipeline).
"""

from morpheus_core.training.settings import TrainSettings
from pipeline.settings.downstream import APERTURE_ARCSEC, DETECTION_RULES, DownstreamSettings
from pipeline.settings.run import CLUSTERS, GPU_MODES, MODELS, RunSettings, upgrade_recorded
from pipeline.settings.train import FIRST_LAYER_INITS, TrainRunSettings
from pipeline.settings.view import DEFAULT_PORT, ViewSettings

__all__ = [
    "APERTURE_ARCSEC",
    "CLUSTERS",
    "DEFAULT_PORT",
    "DETECTION_RULES",
    "FIRST_LAYER_INITS",
    "GPU_MODES",
    "MODELS",
    "DownstreamSettings",
    "RunSettings",
    "TrainRunSettings",
    "TrainSettings",
    "ViewSettings",
    "upgrade_recorded",
]
