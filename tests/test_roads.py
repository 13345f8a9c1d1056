"""Cross-checks of the synthetic roads experiment through the installed package."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from mmp_repro.roads import (RoadsConfig, anomaly_scores, auc_percent, auc_table, normal_positions, roads_test_set,
                             run_roads, sample_roads, write_auc_tables)

TINY = dict(m_values=(2, 3), epochs=4, restarts=2, n_train=256, n_uniform=200, grid_step=0.1)


def test_same_seed_same_numbers_other_seed_other_models():
    a, b = run_roads(RoadsConfig(seed=3, **TINY), progress=False), run_roads(RoadsConfig(seed=3, **TINY), progress=False)
    pd.testing.assert_frame_equal(auc_table(a), auc_table(b))
    for ra, rb in zip(a, b):
        assert ra['restart_losses'] == rb['restart_losses']
        np.testing.assert_array_equal(ra['preds'], rb['preds'])
    c = run_roads(RoadsConfig(seed=4, **TINY), progress=False)
    assert any(ra['restart_losses'] != rc['restart_losses'] for ra, rc in zip(a, c))


@pytest.mark.parametrize('m', [2, 3, 5, 8])
def test_generator_draws_the_formula_positions_uniformly(m):
    n = 20_000
    _, p_next, road = sample_roads(m, n, np.random.default_rng(m), input_noise=0.0)
    expected = {(1.0, 2 * (i - 1) / (m - 1) - 1) for i in range(1, m + 1)}
    assert {tuple(map(float, p)) for p in p_next} == expected
    counts = np.bincount(road, minlength=m)
    sd = np.sqrt(n * (1 / m) * (1 - 1 / m))
    assert np.all(np.abs(counts - n / m) < 5 * sd), counts


@settings(max_examples=30, deadline=None)
@given(m=st.integers(min_value=2, max_value=25), seed=st.integers(min_value=0, max_value=2**16))
def test_proposition_3_at_the_global_minima_for_any_m(m, seed):
    normal = normal_positions(m)
    assert normal.shape == (m, 2) and np.all(normal[:, 0] == 1)
    np.testing.assert_allclose(normal[[0, -1], 1], [-1, 1])
    np.testing.assert_allclose(np.diff(normal[:, 1]), 2 / (m - 1))
    pos, is_abnormal = roads_test_set(m, np.random.default_rng(seed), grid_step=0.1, n_uniform=300)
    np.testing.assert_array_equal(pos[:m], normal)
    assert is_abnormal.sum() == len(pos) - m
    dist_to_normal = np.abs(pos[m:, None] - normal[None]).max(-1).min(1)
    assert dist_to_normal.min() > 0, 'an abnormal test position lies on a road'
    # NN minimum: the m normal positions themselves; single minimum: their mean (1, 0)
    assert auc_percent(anomaly_scores(normal, pos), is_abnormal) == 100.0
    assert auc_percent(anomaly_scores(normal.mean(0, keepdims=True), pos), is_abnormal) < 100.0


def test_auc_tables_have_the_agreed_layout(tmp_path):
    results = [{'m': 2, 'model': 'multi', 'auc': 100.0}, {'m': 2, 'model': 'single', 'auc': 60.5}]
    write_auc_tables(auc_table(results), tmp_path)
    csv = pd.read_csv(tmp_path / 'roads_auc.csv')
    assert list(csv.columns) == ['m', 'model', 'auc']
    assert csv['model'].tolist() == ['multi', 'single']
    md = (tmp_path / 'roads_auc.md').read_text()
    assert 'paper (Prop. 3)' in md and '| 2 | multi | 100.00 | 100 |' in md and '| 2 | single | 60.50 | < 100 |' in md
