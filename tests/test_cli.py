"""The `mmp_repro` console script and the papermill runner, through subprocess."""
import json
import subprocess

import pytest

from conftest import ROOT, console_script
from mmp_repro.paper import EXPERIMENTS


def run(*args, **kw):
    return subprocess.run([console_script('mmp_repro'), *args], capture_output=True, text=True, cwd=ROOT, **kw)


def test_help_and_list():
    r = run('--help')
    assert r.returncode == 0 and 'reproduce' in r.stdout
    r = run('reproduce', '--help')
    assert r.returncode == 0 and '--scale' in r.stdout
    r = run('list')
    assert r.returncode == 0
    assert all(name in r.stdout for name in EXPERIMENTS)
    r = run('list', '--json')
    assert r.returncode == 0 and list(json.loads(r.stdout)) == list(EXPERIMENTS)


def test_every_stage_command_takes_a_config_file():
    import argparse
    from mmp_repro.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for cmd in ('run', 'extract', 'train', 'score', 'evaluate', 'config'):
        text = sub.choices[cmd].format_help()
        assert '--config FILE' in text and '--quiet' in text, cmd
    r = run('config')  # it only prints: --print says so on the command line
    assert r.returncode == 2 and '--print' in r.stderr


def test_bad_input_exits_non_zero_with_reason():
    r = run('reproduce', '--scale', 'huge')
    assert r.returncode == 2 and 'invalid choice' in r.stderr
    r = run('reproduce', '--only', 'no-such-experiment')
    assert r.returncode == 2 and 'invalid choice' in r.stderr


@pytest.mark.parametrize('exp', list(EXPERIMENTS.values()), ids=list(EXPERIMENTS))
def test_experiment_notebooks_take_the_runner_parameters(exp):
    nb = json.loads((ROOT / 'nbs' / exp.notebook).read_text())
    tagged = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(tagged) == 1, f'{exp.notebook} needs exactly one cell tagged "parameters"'
    src = ''.join(tagged[0]['source'])
    for name in ('scale', 'seed', 'out_dir'):
        assert f'{name}:' in src or f'{name} =' in src, f'{exp.notebook} lacks parameter {name}'
    assert "scale: str = 'smoke'" in src, 'the notebook default must be the smoke scale'


def test_reproduce_smoke_roads_writes_figures_and_results(tmp_path):
    figs, out = tmp_path / 'figures', tmp_path / 'runs'
    r = run('reproduce', '--scale', 'smoke', '--only', 'roads', '--figures-dir', str(figs),
            '--out-root', str(out), '--no-progress', '--allow-dirty', timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (figs / 'roads_auc.csv').exists() and (figs / 'fig1_roads.png').exists()
    results = json.loads((figs / 'results.json').read_text())
    rec = results['experiments']['roads']
    assert rec['config']['scale'] == 'smoke' and 'roads_auc.csv' in rec['files']
    assert 'roads_auc' in (figs / 'RESULTS.md').read_text() or '| m |' in (figs / 'RESULTS.md').read_text()
    assert (out / 'roads' / '03_roads.ipynb').exists()
    prov = rec['provenance']
    from mmp_repro.runs import source_hash
    assert prov['source_sha256'] == source_hash() and prov['fresh'] is True and isinstance(prov['notebook_sha256'], str)
    assert r.stdout == '', 'progress goes to stderr'
