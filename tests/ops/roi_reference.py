"""Plain-NumPy RoI pooling and RoI align: torchvision's CPU kernels restated as short loops.

Arithmetic is on NumPy scalars of the input's dtype T (float32 stays float32), in
torchvision's order, so the ops must match these to the bit. Loops run over RoIs, bins
and samples; each step works on all channels at once.
"""

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from hypothesis import strategies as st

FLT_MAX = np.finfo(np.float32).max


def _cround(v) -> int:
    """C's round: halves away from zero (Decimal's ROUND_HALF_UP, on the exact value)."""
    return int(Decimal(float(v)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def roi_pool_reference(x, rois, out_h, out_w, spatial_scale):
    """(maxima (K, C, out_h, out_w), switches (same, int64, -1 for none)) of x (N, C, H, W)."""
    T = x.dtype.type
    scale = T(spatial_scale)
    _, channels, height, width = x.shape
    out = np.zeros((len(rois), channels, out_h, out_w), x.dtype)
    switches = np.full(out.shape, -1, np.int64)
    for k, (b, x1, y1, x2, y2) in enumerate(rois.astype(x.dtype)):
        start_w, start_h = _cround(x1 * scale), _cround(y1 * scale)
        end_w, end_h = _cround(x2 * scale), _cround(y2 * scale)
        roi_w, roi_h = max(end_w - start_w + 1, 1), max(end_h - start_h + 1, 1)  # malformed: 1 cell
        bin_h, bin_w = T(roi_h) / T(out_h), T(roi_w) / T(out_w)
        for i in range(out_h):
            h0 = min(max(int(np.floor(T(i) * bin_h)) + start_h, 0), height)
            h1 = min(max(int(np.ceil(T(i + 1) * bin_h)) + start_h, 0), height)
            for j in range(out_w):
                w0 = min(max(int(np.floor(T(j) * bin_w)) + start_w, 0), width)
                w1 = min(max(int(np.ceil(T(j + 1) * bin_w)) + start_w, 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue  # empty bin: 0, switch -1
                best = np.full(channels, -FLT_MAX, x.dtype)
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        value = x[int(b), :, h, w]
                        better = value > best  # strict: the first maximum stays, NaN never wins
                        best[better] = value[better]
                        switches[k, better, i, j] = h * width + w
                out[k, :, i, j] = best
    return out, switches


def roi_pool_backward_reference(grad, switches, rois, x_shape):
    """Each bin's gradient added at its switch, RoI by RoI, bin by bin."""
    grad_x = np.zeros(x_shape, grad.dtype)
    channels = np.arange(x_shape[1])
    for k in range(len(rois)):
        plane = grad_x[int(rois[k, 0])].reshape(x_shape[1], -1)  # a view
        for i in range(grad.shape[2]):
            for j in range(grad.shape[3]):
                has = switches[k, :, i, j] >= 0
                plane[channels[has], switches[k, has, i, j]] += grad[k, has, i, j]
    return grad_x


def _bilinear(y, x, height, width):
    """torchvision's bilinear taps of one sample: None off the map, else
    ((y_low, y_high, x_low, x_high), (w1, w2, w3, w4))."""
    T = type(y)
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return None
    y = T(0) if y <= 0 else y
    x = T(0) if x <= 0 else x
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = T(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = T(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - T(y_low), x - T(x_low)
    hy, hx = T(1) - ly, T(1) - lx
    return (y_low, y_high, x_low, x_high), (hy * hx, hy * lx, ly * hx, ly * lx)


def _roi_align_samples(roi, out_h, out_w, spatial_scale, sampling_ratio, aligned, height, width):
    """For each bin (i, j): its list of samples (taps or None), and the RoI's divisor."""
    T = type(roi[1])
    scale, offset = T(spatial_scale), T(0.5 if aligned else 0.0)
    start_w, start_h = roi[1] * scale - offset, roi[2] * scale - offset
    roi_w, roi_h = (roi[3] * scale - offset) - start_w, (roi[4] * scale - offset) - start_h
    if not aligned:
        roi_w, roi_h = max(roi_w, T(1)), max(roi_h, T(1))
    bin_h, bin_w = roi_h / T(out_h), roi_w / T(out_w)
    grid_h = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_h / T(out_h)))
    grid_w = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_w / T(out_w)))
    count = T(max(grid_h * grid_w, 1))
    bins = {}
    for i in range(out_h):
        for j in range(out_w):
            bins[i, j] = [
                _bilinear(
                    start_h + T(i) * bin_h + T(iy + 0.5) * bin_h / T(grid_h),
                    start_w + T(j) * bin_w + T(ix + 0.5) * bin_w / T(grid_w),
                    height,
                    width,
                )
                for iy in range(grid_h)
                for ix in range(grid_w)
            ]
    return bins, count


def roi_align_reference(x, rois, out_h, out_w, spatial_scale, sampling_ratio, aligned):
    """(K, C, out_h, out_w) of x (N, C, H, W): each bin's mean of its bilinear samples."""
    _, channels, height, width = x.shape
    out = np.zeros((len(rois), channels, out_h, out_w), x.dtype)
    for k, roi in enumerate(rois.astype(x.dtype)):
        image = x[int(roi[0])].reshape(channels, -1)
        bins, count = _roi_align_samples(
            roi, out_h, out_w, spatial_scale, sampling_ratio, aligned, height, width
        )
        for (i, j), taps in bins.items():
            total = np.zeros(channels, x.dtype)
            for sample in taps:
                if sample is None:  # off the map: torchvision reads position 0 with weight 0
                    (y_low, y_high, x_low, x_high), weights = (0, 0, 0, 0), (x.dtype.type(0),) * 4
                else:
                    (y_low, y_high, x_low, x_high), weights = sample
                w1, w2, w3, w4 = weights
                total += (
                    w1 * image[:, y_low * width + x_low]
                    + w2 * image[:, y_low * width + x_high]
                    + w3 * image[:, y_high * width + x_low]
                    + w4 * image[:, y_high * width + x_high]
                )
            out[k, :, i, j] = total / count
    return out


def roi_align_backward_reference(grad, rois, x_shape, spatial_scale, sampling_ratio, aligned):
    """Each sample's share grad * w / count added to its four taps, RoI by RoI, bin by bin."""
    _, channels, height, width = x_shape
    grad_x = np.zeros(x_shape, grad.dtype)
    for k, roi in enumerate(rois.astype(grad.dtype)):
        plane = grad_x[int(roi[0])]
        bins, count = _roi_align_samples(
            roi, *grad.shape[2:], spatial_scale, sampling_ratio, aligned, height, width
        )
        for (i, j), taps in bins.items():
            g = grad[k, :, i, j]
            for sample in taps:
                if sample is None:
                    continue
                (y_low, y_high, x_low, x_high), (w1, w2, w3, w4) = sample
                plane[:, y_low, x_low] += g * w1 / count
                plane[:, y_low, x_high] += g * w2 / count
                plane[:, y_high, x_low] += g * w3 / count
                plane[:, y_high, x_high] += g * w4 / count
    return grad_x


# ----------------------------------------------------------------- cases for the tests
@st.composite
def roi_cases(draw, specials=False):
    """(x (N, C, H, W), rois (K, 5), spatial_scale, (out_h, out_w)): small maps, and regions
    outside the map, of zero size, reversed, on exact halves after scaling, at scale 1/16.
    Values tie often; with ``specials``, NaN and -inf appear too."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 8)),
        draw(st.integers(1, 8)),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = (rng.integers(-2, 3, shape) if draw(st.booleans()) else rng.standard_normal(shape)).astype(
        dtype
    )
    if specials:
        x.reshape(-1)[rng.random(x.size) < 0.1] = np.nan
        x.reshape(-1)[rng.random(x.size) < 0.1] = -np.inf
    scale = draw(st.sampled_from([1.0, 0.5, 1 / 16, 0.3]))
    on_map = st.one_of(
        st.integers(-3, 10).map(float),
        st.integers(-6, 20).map(lambda v: v / 2),  # halves
        st.floats(-4, 12, allow_nan=False),
    )
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        x1, y1 = draw(on_map), draw(on_map)
        x2, y2 = (
            (x1, y1) if draw(st.integers(0, 4)) == 0 else (draw(on_map), draw(on_map))
        )  # zero size
        rows.append(
            [draw(st.integers(0, shape[0] - 1)), x1 / scale, y1 / scale, x2 / scale, y2 / scale]
        )
    rois = np.array(rows, dtype=dtype).reshape(-1, 5)
    return x, rois, scale, (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
