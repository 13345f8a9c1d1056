"""Execute the lesson notebooks of `nbs/` and keep their outputs, or check that the committed outputs still hold.

    python scripts/notebook_outputs.py write [NAMES...]   # run, clean, save in place (`make outputs`)
    python scripts/notebook_outputs.py check [NAMES...]   # run into memory, compare with what is committed

Lesson notebooks are every notebook in `nbs/` except `index.ipynb` and the experiment notebooks of
`mmp_repro.paper.EXPERIMENTS`, whose executed quick-scale runs `mmp_repro reproduce` keeps in
`figures/notebooks/`. Outputs are cleaned as `nbdev_clean` cleans them (no execution counts, no
volatile metadata, no object addresses). The check compares what is deterministic: text printed to
stdout and the plain-text value of each result and display; a cell marked `#| volatile` (timings) is
run but not compared, numbers are compared within a relative 5e-3 (float arithmetic differs between CPUs), a cell with one of settings.ini's `tst_flags` (`#| slow`, ...) is run by `write`
only, as `nbdev_test` skips it, stderr (progress bars, warnings) is never compared, and figures are
compared by count, since PNG bytes depend on the matplotlib build.
"""
from __future__ import annotations
import argparse, copy, json, os, re, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
sys.path.insert(0, str(ROOT))
from mmp_repro.paper import EXPERIMENTS, clean_outputs  # noqa: E402  (the checkout's package, not an installed one)
from mmp_repro.runs import atomic_write_bytes  # noqa: E402
# Both `write` and `check` run each kernel on one thread, two notebooks at a time: the same
# arithmetic in both, so printed floats agree to the last digit, and both cores busy.
KERNEL_ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1',
              'MPLBACKEND': 'module://matplotlib_inline.backend_inline', 'TQDM_DISABLE': '1',
              'PYDEVD_DISABLE_FILE_VALIDATION': '1'}
VOLATILE = re.compile(r'^\s*#\|\s*volatile\b', re.M)


def _flagged(source: str) -> bool:
    "Whether a cell carries one of settings.ini's `tst_flags` (slow, gpu, ...): `nbdev_test` and `check` skip it."
    from nbdev.config import get_config
    flags = get_config(path=ROOT).get('tst_flags', '').split()
    return any(re.search(rf'^\s*#\|\s*{f}\b', source, re.M) for f in flags)
IPROGRESS = re.compile(r'^.*TqdmWarning: IProgress not found.*\n(?:.*from \.autonotebook import.*\n)?', re.M)
TEXT_KEYS = ('text/plain', 'text/markdown', 'text/latex')


def lesson_notebooks(names: list[str] | None = None) -> list[Path]:
    "The lesson notebooks of `nbs/` (all, or those whose file name or stem is in `names`), in reading order."
    experiments = {e.notebook for e in EXPERIMENTS.values()}
    nbs = [p for p in sorted(NBS.glob('*.ipynb')) if p.name != 'index.ipynb' and p.name not in experiments]
    if names:
        unknown = [n for n in names if not any(n in (p.name, p.stem) for p in nbs)]
        if unknown: raise SystemExit(f'not lesson notebooks: {unknown}; choose from {[p.stem for p in nbs]}')
        nbs = [p for p in nbs if p.name in names or p.stem in names]
    return nbs


def clean(nb: dict) -> dict:
    "`nbdev_clean`'s cleaning with this project's settings (cell tags kept for papermill), then `paper.clean_outputs`."
    from nbdev.clean import clean_nb
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    clean_nb(nb, allowed_metadata_keys=cfg.get('allowed_metadata_keys', '').split(),
             allowed_cell_metadata_keys=cfg.get('allowed_cell_metadata_keys', '').split(), clean_ids=True)
    for c in nb['cells']:
        if 'outputs' not in c: continue
        outputs = clean_outputs(c['outputs'])
        # tqdm's notice that ipywidgets is absent says nothing about the lesson: drop it, and an output it leaves empty
        for o in outputs:
            if o['output_type'] == 'stream': o['text'] = IPROGRESS.sub('', ''.join(o['text'])).splitlines(keepends=True)
        c['outputs'] = [o for o in outputs if o['output_type'] != 'stream' or o['text']]
    return nb


def execute(path: Path, skip_flagged: bool = False) -> tuple[dict, float]:
    """Run `path` in a fresh kernel (working directory `nbs/`); return the cleaned notebook and the seconds it took.
    With `skip_flagged`, cells carrying a `tst_flags` flag are not run (as under `nbdev_test`) and keep no output."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    # the closing `nbdev_export()` cell is never run here: it would rewrite the package while other kernels import it
    skipped = {i: c.source for i, c in enumerate(nb.cells)
               if c.cell_type == 'code' and ('nbdev_export()' in c.source or (skip_flagged and _flagged(c.source)))}
    for i in skipped: nb.cells[i].source = 'pass'
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name='python3', resources={'metadata': {'path': str(NBS)}}).execute(
        env={**os.environ, **KERNEL_ENV})
    for i, source in skipped.items(): nb.cells[i].source, nb.cells[i].outputs = source, []
    return clean(json.loads(nbformat.writes(nb))), time.perf_counter() - start


def _text(v) -> str: return v if isinstance(v, str) else ''.join(v)


def comparable(cell: dict) -> list[tuple]:
    "The deterministic part of a code cell's outputs: stdout text, plain-text values, and a count of figures."
    out, figures = [], 0
    stdout = ''.join(_text(o['text']) for o in cell.get('outputs', []) if o.get('name') == 'stdout')
    if stdout: out.append(('stdout', stdout))  # one entry: how the kernel chunks its prints depends on timing
    for o in cell.get('outputs', []):
        kind = o['output_type']
        if kind == 'stream': continue
        elif kind == 'error': out.append(('error', o.get('ename'), o.get('evalue')))
        elif kind in ('execute_result', 'display_data'):
            data = o.get('data', {})
            figures += any(k.startswith('image/') for k in data)
            for k in TEXT_KEYS:
                if k in data and not (k == 'text/plain' and any(i.startswith('image/') for i in data)):
                    out.append((k, _text(data[k])))
    return out + [('figures', figures)]


NUMBER = re.compile(r'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?')
REL_TOL = 5e-3  # float arithmetic differs between CPUs (MKL's kernels in the last bits, then training amplifies it):
                # 12_location's NLLs move by 0.02 in 12 from an AMD EPYC to an Intel Xeon


def _close_text(a: str, b: str) -> bool:
    "Whether two printed texts say the same, their numbers equal within `REL_TOL` (column padding ignored)."
    ta, tb = a.split(), b.split()
    if len(ta) != len(tb): return False
    for x, y in zip(ta, tb):
        if x == y: continue
        na, nb = NUMBER.findall(x), NUMBER.findall(y)
        if len(na) != len(nb) or NUMBER.sub('#', x) != NUMBER.sub('#', y): return False
        if any(abs(float(u) - float(v)) > REL_TOL * max(abs(float(u)), abs(float(v))) + 1e-12 for u, v in zip(na, nb)): return False
    return True


def same_outputs(pa: list[tuple], pb: list[tuple]) -> bool:
    "`comparable` of two runs agree: the same kinds, figure counts and errors; texts by `_close_text`."
    if len(pa) != len(pb): return False
    return all(x[0] == y[0] and (x == y or (len(x) == len(y) == 2 and isinstance(x[1], str) and isinstance(y[1], str)
                                            and _close_text(x[1], y[1]))) for x, y in zip(pa, pb))


def differences(committed: dict, fresh: dict) -> list[str]:
    "Where `fresh` (just executed) departs from `committed`, one line per cell; empty when they agree."
    a = [c for c in committed['cells'] if c['cell_type'] == 'code']
    b = [c for c in fresh['cells'] if c['cell_type'] == 'code']
    if [_text(c['source']) for c in a] != [_text(c['source']) for c in b]: return ['the code cells differ']
    diffs = []
    for i, (ca, cb) in enumerate(zip(a, b)):
        errors = [o for o in cb.get('outputs', []) if o['output_type'] == 'error']
        if errors: diffs.append(f'code cell {i}: raised {errors[0].get("ename")}: {errors[0].get("evalue")}'); continue
        if VOLATILE.search(_text(ca['source'])) or _flagged(_text(ca['source'])): continue
        if not ca.get('outputs') and cb.get('outputs') and not [o for o in cb['outputs'] if o.get('name') == 'stderr']:
            diffs.append(f'code cell {i}: has outputs now but none committed'); continue
        pa, pb = comparable(ca), comparable(cb)
        if not same_outputs(pa, pb):
            first = _text(ca['source']).strip().splitlines()[0][:70] if _text(ca['source']).strip() else ''
            diffs.append(f'code cell {i} ({first!r}): committed {str(pa)[:300]} != now {str(pb)[:300]}')
    return diffs


def _last_line(e: Exception) -> str:
    "An exception in one line: nbclient's messages end with the cell's own error."
    return f'{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ""}'


def _write_one(path: Path) -> str:
    from execnb.nbio import nb2str
    try: nb, secs = execute(path)
    except Exception as e:  # nbclient stops at the first cell that raises: the committed notebook stays as it was
        return f'{path.name}: FAILED ({_last_line(e)}); not written'
    atomic_write_bytes(path, nb2str(nb).encode('utf-8'))
    figs = sum(comparable(c)[-1][1] for c in nb['cells'] if c['cell_type'] == 'code')
    return f'{path.name}: written in {secs:.0f} s ({figs} figures)'


def _check_one(path: Path) -> tuple[str, list[str], float]:
    committed = json.loads(path.read_text(encoding='utf-8'))
    try: fresh, secs = execute(path, skip_flagged=True)
    except Exception as e:  # a cell that raises: nbclient stops there
        return path.name, [f'execution failed: {_last_line(e)}'], 0.0
    return path.name, differences(committed, fresh), secs


def check(paths: list[Path], workers: int = 2) -> dict[str, list[str]]:
    "Execute `paths` (two at a time) and return, per notebook, where its outputs differ from the committed ones."
    with ThreadPoolExecutor(workers) as pool:  # each notebook runs in its own kernel process
        results = list(pool.map(_check_one, paths))
    for name, diffs, secs in results: print(f'{name}: {"ok" if not diffs else f"{len(diffs)} differences"} ({secs:.0f} s)', file=sys.stderr)
    return {name: diffs for name, diffs, _ in results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('mode', choices=['write', 'check'])
    p.add_argument('names', nargs='*', help='notebook file names or stems (default: every lesson notebook)')
    p.add_argument('--workers', type=int, default=2)
    a = p.parse_args(argv)
    paths = lesson_notebooks(a.names)
    if a.mode == 'write':
        with ThreadPoolExecutor(a.workers) as pool:
            lines = list(pool.map(_write_one, paths))
        print('\n'.join(lines))
        return int(any('FAILED' in l for l in lines))
    bad = {n: d for n, d in check(paths, a.workers).items() if d}
    for n, d in bad.items(): print(f'{n}:\n  ' + '\n  '.join(d))
    if bad: print('committed outputs no longer match the code: run `make outputs` and commit the notebooks')
    return int(bool(bad))


if __name__ == '__main__':
    sys.exit(main())
