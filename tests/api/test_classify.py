"""morpheus_survey.classify: arrays in memory or Dask arrays, tiled and merged, equal to
the whole image classified at once and to a brute-force float64 window loop."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from astropy.wcs import WCS

from morpheus_core.engine import classify_image
from morpheus_core.stats import finalize
from morpheus_core.testing import StandInClassifier
from morpheus_core.windows import standardize_windows
from morpheus_survey import InputError, classify

SHAPE = (97, 83)  # odd sides: tiles of 32 leave short last tiles


def _bands(seed: int = 11, shape=SHAPE) -> np.ndarray:
    """Four noisy bands with an unobserved (NaN) footprint that crosses tile edges at
    32 and 64, censored zeros in one band, and a masked row."""
    rng = np.random.default_rng(seed)
    image = rng.normal(1.0, 0.5, size=(4, *shape)).astype(np.float32)
    image[:, 20:45, 50:70] = np.nan  # crosses y = 32 and x = 64
    image[2, 60:63, 5:9] = 0.0  # censored in V only: unusable in every band
    image[1, 80, :] = np.nan  # one band missing a row
    return image


def _usable(image: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(image) & (image != 0), axis=0)


def _brute_force(image: np.ndarray, stride: int) -> dict[str, np.ndarray]:
    """Every window whose pixels are all usable, one at a time, accumulated in float64
    with two passes (no running moments, no tiles, no engine)."""
    net = StandInClassifier()
    n_win, border = net.window, net.border
    inner = n_win - 2 * border
    usable = _usable(image)
    hwc = np.moveaxis(image, 0, -1)
    h, w = usable.shape
    outputs: dict[tuple[int, int], list[np.ndarray]] = {}
    for y in range(0, h - n_win + 1, stride):
        for x in range(0, w - n_win + 1, stride):
            if usable[y : y + n_win, x : x + n_win].all():
                probs = net(standardize_windows(hwc[None, y : y + n_win, x : x + n_win].copy()))[0]
                outputs[(y, x)] = probs.astype(np.float64)
    n = np.zeros((h, w), np.int64)
    s1 = np.zeros((5, h, w))
    votes = np.zeros((5, h, w))
    for (y, x), p in outputs.items():
        ys, xs = slice(y + border, y + border + inner), slice(x + border, x + border + inner)
        n[ys, xs] += 1
        s1[:, ys, xs] += np.moveaxis(p, -1, 0)
        votes[:, ys, xs] += np.moveaxis(p.argmax(-1)[..., None] == np.arange(5), -1, 0)
    mean = np.divide(s1, n, out=np.zeros_like(s1), where=n > 0)
    sq = np.zeros((5, h, w))
    for (y, x), p in outputs.items():
        ys, xs = slice(y + border, y + border + inner), slice(x + border, x + border + inner)
        sq[:, ys, xs] += (np.moveaxis(p, -1, 0) - mean[:, ys, xs]) ** 2
    total = mean.sum(axis=0)
    return {
        "n": n,
        "mean": np.divide(mean, total, out=np.zeros_like(mean), where=n > 0),
        "variance": np.divide(sq, n, out=np.zeros_like(sq), where=n > 0),
        "rank": np.divide(votes, n, out=np.zeros_like(votes), where=n > 0),
    }


def _whole_image(image: np.ndarray, stride: int = 1):
    return finalize(classify_image(image, StandInClassifier(), stride=stride, coverage=_usable(image)))


def _assert_equal(result, reference) -> None:
    """Counts and votes are integers: exact. Means and variances are float64 sums of the
    same float32 probabilities in another order, stored as float32: 1e-6 absolute."""
    np.testing.assert_array_equal(result["n"].values, reference.n)
    np.testing.assert_array_equal(result["rank"].values, reference.rank)
    np.testing.assert_allclose(result["mean"].values, reference.mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result["variance"].values, reference.variance, rtol=0, atol=1e-6)


def test_arrays_in_any_order_equal_the_whole_image_and_a_brute_force_loop():
    image = _bands()
    given = {"z": image[3], "F160W": image[0], "v": image[2], "J": image[1]}  # names, filters, any case and order
    result = classify(given, model="standin", tile=32, stride=2)
    assert result["mean"].dims == ("class", "y", "x") and result["n"].dims == ("y", "x")
    assert list(result["class"].values) == ["spheroid", "disk", "irregular", "point_source", "background"]
    assert result.attrs["bands"] == ["H", "J", "V", "Z"]
    assert result.attrs["given_bands"] == ["F160W", "J", "v", "z"]
    _assert_equal(result, _whole_image(image, stride=2))
    brute = _brute_force(image, stride=2)
    np.testing.assert_array_equal(result["n"].values, brute["n"])
    # float32 network outputs, float32 images: 2e-6 covers the rounding of both sides
    for name in ("mean", "variance", "rank"):
        np.testing.assert_allclose(result[name].values, brute[name], rtol=0, atol=2e-6, err_msg=name)
    unusable = ~_usable(image)
    assert result["n"].values[unusable].max() == 0  # no window counts an unobserved or censored pixel
    assert (result["n"].values > 0).any() and not np.isnan(result["mean"].values).any()


def test_dask_input_is_lazy_and_equals_the_in_memory_result(monkeypatch):
    import pipeline.classify.tasks as tasks

    image = _bands(seed=5)
    lazy_bands = {band: da.from_array(image[i], chunks=(32, 40)) for i, band in enumerate("HJVZ")}
    calls = []
    real = tasks.classify_tile
    monkeypatch.setattr(tasks, "classify_tile", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = classify(lazy_bands, model="standin")
    assert calls == []  # nothing classified yet
    for name in ("mean", "variance", "rank", "n"):
        assert isinstance(result[name].data, da.Array), name
    assert result["mean"].data.chunks[1:] == ((32, 32, 32, 1), (40, 40, 3))  # the input's chunks
    computed = result.compute()
    assert len(calls) == 4 * 3  # one task per tile, each once
    _assert_equal(computed, _whole_image(image))
    # A part of the lazy result computes only what it needs, and agrees with the whole.
    corner = result["rank"].isel(y=slice(0, 10), x=slice(0, 10)).values
    np.testing.assert_array_equal(corner, computed["rank"].values[:, :10, :10])


def test_a_cube_with_band_names_and_a_wcs_gives_sky_coordinates():
    from morpheus_core.simulate import render_sky

    sky = render_sky((70, 75), seed=2, n_galaxies=2, n_stars=1)
    header = sky.wcs.to_header()
    header["NAXIS1"], header["NAXIS2"] = 75, 70
    cube = np.stack([sky.images[i] for i in (2, 0, 3, 1)])  # V, H, Z, J
    result = classify(cube, bands=["V", "H", "Z", "J"], model="standin", wcs=sky.wcs, tile=48)
    _assert_equal(result, _whole_image(np.asarray(sky.images, dtype=np.float32)))
    wcs = result.attrs["wcs"]
    assert isinstance(wcs, WCS) and wcs.wcs.compare(sky.wcs.celestial.wcs)
    # the header text keeps 13 significant digits
    assert WCS(result.attrs["wcs_header"]).wcs.compare(sky.wcs.celestial.wcs, tolerance=1e-12)
    for y, x in ((0, 0), (69, 74), (33, 12)):
        sky_xy = sky.wcs.pixel_to_world(x, y)
        assert abs(float(result["ra"][y, x]) - sky_xy.ra.deg) < 1e-9
        assert abs(float(result["dec"][y, x]) - sky_xy.dec.deg) < 1e-9
    lazy = classify(
        {b: da.from_array(cube[i], chunks=35) for i, b in enumerate("VHZJ")}, model="standin", wcs=header
    )  # a FITS header works too
    assert isinstance(lazy["ra"].data, da.Array)
    np.testing.assert_allclose(lazy["ra"].values, result["ra"].values, rtol=0, atol=1e-12)


def test_bad_input_is_refused_in_one_line_naming_it():
    image = _bands()
    bands = dict(zip("HJVZ", image))
    with pytest.raises(InputError, match="missing band.*Z"):
        classify({k: v for k, v in bands.items() if k != "Z"}, model="standin")
    with pytest.raises(InputError, match="does not take: I"):
        classify({**bands, "I": image[0]}, model="standin")
    with pytest.raises(InputError, match=r"band 'J' has shape \(97, 82\)"):
        classify({**bands, "J": image[1][:, :-1]}, model="standin")
    with pytest.raises(InputError, match="smaller than the network's 40x40 window"):
        classify({k: v[:39] for k, v in bands.items()}, model="standin")
    with pytest.raises(InputError, match="must be a 2-D image"):
        classify({**bands, "H": image}, model="standin")
    with pytest.raises(InputError, match="not both"):
        classify(bands, bands=list("HJVZ"), model="standin")
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cdelt = [-0.06 / 3600, 0.06 / 3600]
    wcs.pixel_shape = (80, 97)  # (NAXIS1, NAXIS2): not the bands' 97x83
    with pytest.raises(InputError, match="wcs is of a 97x80 image"):
        classify(bands, model="standin", wcs=wcs)
    wcs.pixel_shape = (83, 97)
    wcs.wcs.cdelt = [-0.12 / 3600, 0.12 / 3600]  # twice the network's pixel scale
    with pytest.raises(InputError, match="pixel scale"):
        classify(bands, model="standin", wcs=wcs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classify(bands, model="standin", wcs=wcs, accept_pixel_scale=True, stride=5)
    assert any("pixel scale" in str(w.message) for w in caught)
