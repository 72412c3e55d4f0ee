"""Settings of ``train``: what to train on, where the results go and how the run is
set up (the hyper-parameters are :class:`~morpheus_core.training.settings.TrainSettings`,
beside the training code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.settings.fields import VERBOSE_HELP, setting

__all__ = ["FIRST_LAYER_INITS", "TrainRunSettings"]

#: How the first convolution starts when fine-tuning onto other bands.
FIRST_LAYER_INITS = ("wavelength", "random")


@dataclass(frozen=True)
class TrainRunSettings:
    """The ``train`` command's own inputs (its options are generated from these
    fields, :mod:`pipeline.cli.options`).

    Attributes
    ----------
    data_dir : Path
        Training-set folder (:mod:`pipeline.training.training_set`).
    out_dir : Path
        Output folder (``--out``; created).
    init : str
        ``released``, ``scratch`` or a ``.weights.h5`` path (its card says its bands).
    bands, classes : str, optional
        Comma-separated bands (channel order) and classes; default the folder's
        ``training_set.json``, else the released model's.
    pixel_scale : float, optional
        Arcsec per pixel of the thumbnails (default: the folder's description).
    first_layer : {"wavelength", "random"}
        Initialisation of the band layers when ``init`` has other bands.
    test_fraction : float
        Held-out fraction when the votes table has no ``split`` column.
    threads : int, optional
        Compute threads (:func:`morpheus_core.runtime.configure_threads`).
    synthetic : int, optional
        Write this many simulated objects to ``data_dir`` first, unless it already
        holds a votes table.
    synthetic_size : int
        Thumbnail side of the simulated objects.
    verbose : bool
        Let TensorFlow print its start-up lines (:mod:`pipeline.quiet`).
    """

    data_dir: Path = setting(help="training-set folder (votes.csv + FITS thumbnails)")
    out_dir: Path = setting(Path("runs/train"), flag="--out", metavar="OUT", help="output folder")
    init: str = setting("released", help="released (fine-tune the released weights), scratch, or a .weights.h5 file")
    bands: str | None = setting(
        None,
        metavar="B1,B2,...",
        help="the training set's bands in channel order (thumbnails <id>_<band>.fits): names such as H or F150W "
        "(known HST and NIRCam bands take their filter and wavelength), or NAME:FILTER:WAVELENGTH_UM; default: "
        "training_set.json in --data-dir, else H,J,V,Z",
    )
    classes: str | None = setting(
        None,
        metavar="C1,C2,...",
        help="output classes (background is added last); the votes table has one column per class and 'unknown'; "
        "default: training_set.json, else spheroid,disk,irregular,point_source",
    )
    pixel_scale: float | None = setting(
        None,
        metavar="ARCSEC",
        help="arcsec per pixel of the thumbnails (the model card records it; runs check mosaics against it); "
        "default: training_set.json, else 0.06 (0.03 for a simulated NIRCam set)",
    )
    first_layer: str = setting(
        "wavelength",
        choices=FIRST_LAYER_INITS,
        help="when fine-tuning onto other bands: start the first convolution from the released band nearest in "
        "wavelength, or at random",
    )
    test_fraction: float = setting(0.2, help="held-out fraction when the votes table has no split column")
    threads: int | None = setting(None, help="TensorFlow / BLAS threads (default: all cores)")
    synthetic: int | None = setting(
        None,
        metavar="N",
        help="first write N simulated objects to --data-dir (if it has no votes table yet), in "
        "the --bands given (HST H,J,V,Z or NIRCam filters)",
    )
    synthetic_size: int = setting(84, help="thumbnail side of simulated objects (px)")
    verbose: bool = setting(False, help=VERBOSE_HELP)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
