"""Export the released Morpheus weights to a Keras ``.weights.h5`` file.

Reading the released TF1 checkpoint needs TensorFlow; the exported file loads on any
Keras backend (``morpheus_core.weights.load_model(path)``, ``--weights path`` on the
command line), e.g. on a GPU machine with JAX and no TensorFlow.

Usage::

    python benchmarks/export_weights.py OUT.weights.h5
"""

from __future__ import annotations

import sys
from pathlib import Path


def export(out: Path) -> Path:
    """Write the released weights (full-window network) to ``out``, atomically."""
    from morpheus_core.weights import load_released_model

    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"Keras weights files end in .weights.h5, got {out.name}")
    tmp = out.with_name(out.name[: -len(".weights.h5")] + ".tmp.weights.h5")
    load_released_model().save_weights(tmp)
    tmp.replace(out)
    return out


if __name__ == "__main__":
    path = export(Path(sys.argv[1]))
    print(f"weights: {path} ({path.stat().st_size} bytes)")
