"""`mmp_repro bench` at smoke scale: one JSON-able result with every documented key, and sane rates."""
import json
import math

import torch

import pytest

from mmp_repro.bench import NET_NAMES, bench, perf_table, write_perf


@pytest.fixture(scope='module')
def result():
    return bench('smoke', progress=False, watch=False)


def test_result_has_the_documented_keys_and_is_json(result):
    for k in ('matmul_gflops', 'load_avg', 'pipeline_train_samples_per_s', 'pipeline_to_step_ratio', 'image_step_images_per_s',
              'watch_fps', 'watch_stages', 'machine', 'torch', 'torch_threads', 'timed_calls'):
        assert k in result, k
    for k in ('train_step_samples_per_s', 'infer_samples_per_s', 'train_pct_of_matmul', 'infer_pct_of_matmul'):
        assert set(result[k]) == set(NET_NAMES) == {'quick', 'full'}, k
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert isinstance(result['machine'], dict) and isinstance(result['torch'], str) and result['timed_calls'] >= 1


def test_rates_are_positive_and_finite(result):
    for k in ('train_step_samples_per_s', 'infer_samples_per_s', 'train_pct_of_matmul', 'infer_pct_of_matmul'):
        for n in NET_NAMES:
            v = result[k][n]
            assert isinstance(v, float) and math.isfinite(v) and v > 0, (k, n, v)
    for k in ('matmul_gflops', 'pipeline_train_samples_per_s', 'pipeline_to_step_ratio', 'image_step_images_per_s'):
        assert math.isfinite(result[k]) and result[k] > 0, k
    # the paper's network does about 20x the work of the quick one per sample: it cannot be faster
    assert result['train_step_samples_per_s']['full'] < result['train_step_samples_per_s']['quick']


def test_watch_off_says_so(result):
    assert result['watch_fps'] is None and result['watch_stages'] is None
    assert 'watch=False' in result['watch_note']


def test_perf_files(result, tmp_path):
    paths = write_perf(result, tmp_path)
    assert [p.name for p in paths] == ['perf.md', 'perf.csv', 'perf.json', 'perf.png'] and all(p.stat().st_size for p in paths)
    md = (tmp_path / 'perf.md').read_text()
    assert 'median of' in md and '| training step (full) |' in md
    # the caption names the precision the training steps ran in, as training resolved it on this machine
    from mmp_repro.training import TrainConfig, autocast_dtype, precision_name
    assert f"training steps in {precision_name(autocast_dtype(TrainConfig(), torch.device(result['device'])))}, inference in fp32" in md
    assert len(perf_table(result)) >= 8


def test_bench_main_prints_one_json_object_or_the_table(result, tmp_path, monkeypatch, capsys):
    import mmp_repro.bench as mb

    def fake(scale, progress=True, **kw):
        print('progress that must not reach stdout')
        return result
    monkeypatch.setattr(mb, 'bench', fake)
    assert mb.bench_main('smoke', as_json=True, out_dir=str(tmp_path)) is result
    out = capsys.readouterr()
    assert json.loads(out.out) == result and 'progress' in out.err
    assert (tmp_path / 'perf.md').is_file() and (tmp_path / 'perf.json').is_file()
    mb.bench_main('smoke', as_json=False)
    assert capsys.readouterr().out.strip() == mb.perf_markdown(result).strip()
