"""Quality bits of catalogued objects (morpheus_core.flags) on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core.flags import FLAG_BITS, FLAG_DESCRIPTION, flag_names, object_flags

from .photometry_scene import make_scene


def _case():
    labels = np.zeros((20, 24), np.int32)
    data = np.full((20, 24), 1.0)
    mask = np.zeros((20, 24), bool)
    labels[0:3, 2:6] = 1  # on the image's first row
    labels[5:9, 2:6] = 2
    mask[5:9, 6] = True  # unobserved column next to object 2
    labels[5:9, 9:13] = 3
    data[6, 10] = np.nan  # an unobserved pixel inside object 3
    labels[11:16, 2:7] = 4
    data[13, 4] = 0.0  # a censored core: zero, every other neighbour in the object positive
    labels[11:16, 9:14] = 5
    data[11:16, 9:14] = np.linspace(-1, 1, 25).reshape(5, 5)
    data[13, 11] = 0.0  # a zero in noise: a negative neighbour, not a censored core
    labels[15:20, 16:21] = 6  # on the image's last row
    return labels, data, mask


def test_each_bit_on_a_constructed_case():
    labels, data, mask = _case()
    ids = [1, 2, 3, 4, 5, 6]
    flags = object_flags(
        labels,
        ids,
        mask=mask,
        bands=[data],
        sub_id=[0, 1, 2, 0, 0, 0],
        oversize=[False] * 5 + [True],
        detection_flag=[1, 0, 2, 3, 1, 1],
    )
    expected = [2, 1 + 4 + 64, 1 + 4 + 8 + 128, 16 + 256, 0, 2 + 32]
    assert flags.tolist() == expected
    assert flag_names(flags[2]) == ["deblended", "footprint_edge", "unobserved_pixels", "uncertain_detection"]
    # Without the band, nothing marks object 3's pixel or object 4's zero.
    assert object_flags(labels, [3, 4], mask=mask).tolist() == [0, 0]


def test_a_cutout_gives_the_whole_image_flags():
    labels, data, mask = _case()
    ids = [2, 3, 4, 5, 6]
    whole = object_flags(labels, ids, mask=mask, bands=[data])
    # Object 2 starts on the cutout's first row, which is not the image's edge.
    cut = (slice(5, 20), slice(1, 24))
    part = object_flags(labels[cut], ids, offset=(5, 1), image_shape=labels.shape, mask=mask[cut], bands=[data[cut]])
    assert part.tolist() == whole.tolist()
    assert object_flags(labels[cut], ids, mask=mask[cut], bands=[data[cut]])[0] & 2  # as a whole image: on the edge


def test_the_table_and_bad_input():
    assert list(FLAG_BITS) == [2**k for k in range(len(FLAG_BITS))]
    assert all(name in FLAG_DESCRIPTION for name, _ in FLAG_BITS.values())
    labels, data, mask = _case()
    with pytest.raises(ValueError, match="sub_id has 1 entries for 2 ids"):
        object_flags(labels, [1, 2], sub_id=[0])
    with pytest.raises(ValueError, match="detection flags must be"):
        object_flags(labels, [1], detection_flag=[4])
    with pytest.raises(ValueError, match="same shape"):
        object_flags(labels, [1], bands=[data[:-1]])


def test_flags_on_the_synthetic_scene():
    scene = make_scene()
    flags = object_flags(
        scene.labels, scene.ids, mask=scene.mask, bands=list(scene.bands.values()), sub_id=scene.sub_id
    )
    assert ((flags & 1) > 0).tolist() == (scene.sub_id > 0).tolist()
    censored = np.unique(scene.labels[(scene.bands["H"] == 0) & (scene.labels > 0)])
    assert len(censored) >= 1 and all(flags[scene.ids == i][0] & 16 for i in censored)
    assert (flags & 16 > 0).sum() == len(censored)
    assert (flags & 4 > 0).sum() >= 1 and (flags & 8 == 0).all()  # the segments avoid the NaN footprint
