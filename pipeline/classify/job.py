"""One run's classification as its driver and its tasks see it (:class:`ClassificationJob`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.rundir.layout import RunLayout
from pipeline.rundir.ledger import Ledger
from pipeline.rundir.location import Location

if TYPE_CHECKING:
    from morpheus_core.cards import ModelCard
    from pipeline.settings import RunSettings

__all__ = ["ClassificationJob"]


@dataclass(frozen=True)
class ClassificationJob:
    """What the classification of one run needs, made once per command and sent with
    every tile and merge task.

    It pickles as its fields (a :class:`~pipeline.rundir.location.Location` as its URL and
    options), so the workers get the settings, the run directory and the model card as
    the driver read them, and read nothing again to learn them.

    Attributes
    ----------
    config : RunSettings
        The run's settings (``tile`` as fitted to the mosaic).
    run_dir : Location
        The run directory, absolute (workers may run in another working directory)
        or a URL.
    run_id : str
        The run's id (from its manifest); labels every partial and store.
    card : ModelCard
        The network's model card, read once by the command
        (:func:`pipeline.inputs.model_cards.card_for`).
    ledger : Ledger
        The run's tile bookkeeping.
    """

    config: RunSettings
    run_dir: Location
    run_id: str
    card: ModelCard
    ledger: Ledger

    @classmethod
    def start(cls, config: RunSettings, run_dir: Location, run_id: str, card: ModelCard) -> ClassificationJob:
        """The job of run ``run_id`` in ``run_dir``, its ledger's folders created."""
        return cls(config, run_dir, run_id, card, Ledger(run_dir))

    @property
    def layout(self) -> RunLayout:
        """Where everything of the run lives."""
        return self.ledger.layout
