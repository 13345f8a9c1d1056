"""Optical flow: input checks, the learned-flow slot's contract, forward direction on a moving object, speed."""
import time

import cv2
import numpy as np
import pytest

from mmp_repro.flow import (
    DIS_PRESETS,
    LearnedFlow,
    compute_flow,
    flow_magnitude,
    video_flows,
    warp_back,
)


def _scene(shift: int = 0) -> np.ndarray:
    "A textured 240x360 BGR frame with a bright textured block whose left edge is at x = 100 + shift."
    rng = np.random.default_rng(1)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (240, 360, 3), dtype=np.uint8), (0, 0), 1.5)
    block = cv2.GaussianBlur(rng.integers(100, 255, (60, 40, 3), dtype=np.uint8), (0, 0), 1.0)
    f = bg.copy(); f[80:140, 100 + shift:140 + shift] = block
    return f


@pytest.mark.parametrize('method, kw', [('dis', {}), ('dis', {'preset': 'ultrafast'}), ('farneback', {}), ('farneback-small', {})])
def test_forward_flow_points_where_the_object_goes(method, kw):
    f0, f1 = _scene(0), _scene(4)
    flow = compute_flow(f0, f1, method, **kw)
    assert flow.shape == (240, 360, 2) and flow.dtype == np.float32
    inside = flow[90:130, 108:132]  # block interior in frame t
    assert abs(np.median(inside[..., 0]) - 4) < 0.5 and abs(np.median(inside[..., 1])) < 0.5
    mag = flow_magnitude(flow)
    assert np.median(mag[:60]) < 0.3  # static background far from the block


@pytest.mark.parametrize('a, b, msg', [
    (np.zeros((20, 30, 3), np.uint8), np.zeros((20, 31, 3), np.uint8), 'differ in shape'),
    (np.zeros((20, 30), np.uint8), np.zeros((20, 30), np.uint8), 'frame_t must be (H, W, 3) uint8'),
    (np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30, 3), np.float64), 'frame_t1 must be (H, W, 3) uint8'),
])
@pytest.mark.parametrize('method', ['dis', 'farneback'])
def test_bad_frames_are_refused(a, b, msg, method):
    with pytest.raises(ValueError) as e: compute_flow(a, b, method)
    assert msg in str(e.value)


def test_learned_slot_contract():
    torch = pytest.importorskip('torch')
    a, b = _scene(0), _scene(2)
    seen = {}
    def model(x, y):
        seen['args'] = (x is a, y is b)
        return torch.ones(1, 2, *x.shape[:2])
    flow = compute_flow(a, b, model)
    assert seen['args'] == (True, True) and flow.shape == (240, 360, 2) and flow.dtype == np.float32
    np.testing.assert_array_equal(flow[0, 0], [1, 1])
    with pytest.raises(ValueError, match=r'returned shape \(3, 240, 360\)'):
        compute_flow(a, b, lambda x, y: np.zeros((3, 240, 360)))
    with pytest.raises(TypeError, match='must be callable'):
        LearnedFlow(42)
    with pytest.raises(ValueError, match='unknown DIS preset'):
        compute_flow(a, b, 'dis', preset='slow')


def test_video_flows_pairs_and_warp():
    frames = [_scene(s) for s in (0, 3, 6, 9)]
    flows = list(video_flows(frames, 'dis'))
    assert len(flows) == 3
    for t, fl in enumerate(flows):
        err = np.abs(warp_back(frames[t + 1], fl).astype(int) - frames[t])[80:140, 95:150].mean()
        assert err < np.abs(frames[t + 1].astype(int) - frames[t])[80:140, 95:150].mean() / 2


def test_flow_magnitude_values():
    flow = np.zeros((2, 2, 2), np.float32); flow[0, 0] = (3, 4)
    np.testing.assert_allclose(flow_magnitude(flow), [[5, 0], [0, 0]])
    with pytest.raises(ValueError, match=r'\(H, W, 2\)'): flow_magnitude(np.zeros((2, 2, 3)))


def test_dis_is_fast_enough_at_360x240():
    "A loose bound (shared 2-core machines): the default preset must stay well under the 100 ms frame budget."
    a, b = _scene(0), _scene(2)
    compute_flow(a, b)
    t0 = time.perf_counter()
    for _ in range(5): compute_flow(a, b)
    assert (time.perf_counter() - t0) / 5 < 0.08
    assert set(DIS_PRESETS) == {'ultrafast', 'fast', 'medium'}
