"""An installed wheel, outside any checkout: it carries the experiment notebooks, runs `reproduce` into the cache
(nothing into the working directory), and its searches for data and weights never name this project's own folders."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def wheel_env(tmp_path_factory):
    "The package built as a wheel and unpacked into a folder of its own; its dependencies come from this environment."
    tmp = tmp_path_factory.mktemp('wheel')
    # built from a copy: setuptools leaves a build/ folder in the tree it builds, which must not be the checkout
    src = tmp / 'src'
    src.mkdir()
    for f in ('setup.py', 'settings.ini', 'README.md', 'LICENSE', 'MANIFEST.in'): shutil.copy2(ROOT / f, src / f)
    for d in ('mmp_repro', 'nbs'): shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints'))
    build = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', str(tmp / 'dist'),
                            str(src)], capture_output=True, text=True, cwd=tmp)
    assert build.returncode == 0, build.stderr
    wheel, = (tmp / 'dist').glob('mmp_repro-*.whl')
    target = tmp / 'site'
    inst = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', str(target), str(wheel)],
                          capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr
    cwd = tmp / 'work'; cwd.mkdir()
    # PYTHONPATH comes before the editable install of this checkout, so `import mmp_repro` is the wheel's
    env = {**os.environ, 'PYTHONPATH': str(target), 'MMP_CACHE': str(tmp / 'cache'), 'MPLBACKEND': 'Agg'}
    env.pop('MMP_DATA', None)
    return target, cwd, env


def _python(env, cwd, *args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env[2], timeout=timeout)


def test_the_wheel_is_what_runs_and_carries_the_notebooks(wheel_env):
    target, cwd, _ = wheel_env
    r = _python(wheel_env, cwd, '-c', 'import mmp_repro, mmp_repro.core as c, mmp_repro.paper as p; '
                'print(mmp_repro.__file__); print(c.checkout_root()); print(p.notebooks_dir())')
    assert r.returncode == 0, r.stderr
    file, checkout, nbs = r.stdout.split('\n')[:3]
    assert Path(file).is_relative_to(target) and checkout == 'None'
    names = {p.name for p in Path(nbs).glob('*.ipynb')}
    assert {'03_roads.ipynb', '17a_street_mmp.ipynb', '17g_bench.ipynb'} <= names
    # the bundled copies drop the `nbdev_export()` cell (it needs a checkout) and hash as the sources do
    from mmp_repro.paper import notebook_hash
    assert 'nbdev_export' not in (Path(nbs) / '03_roads.ipynb').read_text()
    # nbdev is a development tool, not an install requirement: a bundled notebook must run without it
    for nb in Path(nbs).glob('*.ipynb'):
        code = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
        assert not any('nbdev' in line for s in code for line in s.splitlines() if 'import' in line), nb.name
    assert notebook_hash(Path(nbs) / '03_roads.ipynb') == notebook_hash(ROOT / 'nbs' / '03_roads.ipynb')


def test_reproduce_from_the_wheel_writes_into_the_cache_only(wheel_env):
    _, cwd, env = wheel_env
    r = _python(wheel_env, cwd, '-m', 'mmp_repro', 'reproduce', '--scale', 'smoke', '--only', 'roads', '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # nothing written into the working directory
    figures = Path(env['MMP_CACHE']) / 'reproduce' / 'figures'
    assert (figures / 'roads_auc.csv').is_file() and (figures / 'fig1_roads.png').is_file()
    rec = json.loads((figures / 'results.json').read_text())['experiments']['roads']
    assert rec['provenance']['git_commit'] is None  # no checkout: the source hash alone identifies the code
    assert 'the code now installed' in (figures / 'RESULTS.md').read_text()


def test_weight_and_data_searches_name_no_development_folder(wheel_env):
    _, cwd, env = wheel_env
    r = _python(wheel_env, cwd, '-c', 'from mmp_repro.detection import find_yolov3_tiny\n'
                'from mmp_repro.core import data_candidates\n'
                'print(data_candidates("mnist"))\n'
                'find_yolov3_tiny()')
    assert r.returncode != 0 and 'YOLOv3-tiny not found' in r.stderr
    msg = r.stderr.strip().splitlines()[-1]
    assert 'shared' not in msg and 'shared' not in r.stdout, (msg, r.stdout)
    assert str(Path(env['MMP_CACHE']) / 'yolov3-tiny') in msg


def test_a_missing_kernel_names_the_install(monkeypatch):
    import importlib.util
    from mmp_repro import paper
    real = importlib.util.find_spec
    monkeypatch.setattr(paper.importlib.util, 'find_spec', lambda name, *a: None if name == 'ipykernel' else real(name, *a))
    with pytest.raises(RuntimeError, match='pip install ipykernel'): paper.check_kernel()
