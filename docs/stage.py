"""Write the sources of the documentation site into a staging folder (default `_docs/src`), for `make docs`.

The staged tree mirrors the checkout, so a relative link that works on GitHub works on the site too:
`index.md` is README.md, `nbs/` holds the lesson notebooks, `figures/RESULTS.md` the results with their
figures, `figures/notebooks/` the executed experiment notebooks, `api/` and `cli.md` the references.
Notebooks are copied with their saved outputs (the site never executes them), without `#| hide` cells
and without the nbdev `#|` directive lines. Files are rewritten only when their content changes, so
Sphinx rebuilds only what changed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
NBS = ROOT / 'nbs'
FIGURES = ROOT / 'figures'
PKG = ROOT / 'mmp_repro'
README_NB = 'index.ipynb'  # settings.ini readme_nb: README.md is its markdown

DIRECTIVE = re.compile(r'^\s*#\s*\|')              # an nbdev directive line: `#| export`, `#| hide`, ...
HIDE = re.compile(r'^\s*#\s*\|\s*hide\s*$')
FENCE = re.compile(r'^\s*(```|~~~)')
MD_LINK = re.compile(r'(!?\[[^\]]*\]\()([^)\s]+)((?:\s+"[^"]*")?\))')  # [text](target "title"), ![alt](target)
MARKER = '.mmp-docs-staging'  # a folder holding it was made by this script: its other files may be removed
HTML_LINK = re.compile(r'((?:src|href)=")([^"]+)(")')


def experiments() -> list:
    "The registered experiments, in registry order (`mmp_repro.paper.EXPERIMENTS`)."
    sys.path.insert(0, str(ROOT))
    from mmp_repro.paper import EXPERIMENTS
    return list(EXPERIMENTS.values())


class Stager:
    "Writes the staged tree under `out` and remembers what it wrote, so that stale files can be removed."

    def __init__(self, out: Path, exps: list):
        self.out, self.exps, self.written = out, exps, set()
        self.exp_nbs = {e.notebook for e in exps} | {e.kept_name for e in exps}

    def write(self, rel: str | Path, data: str | bytes) -> None:
        path = self.out / rel
        data = data.encode('utf-8') if isinstance(data, str) else data
        self.written.add(path)
        if path.is_file() and path.read_bytes() == data: return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def site_path(self, repo_rel: Path) -> Path | None:
        "Where the repository file `repo_rel` lives on the site (copying it there when it is a plain file), or None."
        parts = repo_rel.parts
        if repo_rel in (Path('README.md'), Path('nbs') / README_NB): return Path('index.md')
        if len(parts) == 2 and parts[0] == 'nbs' and parts[1] in self.exp_nbs: return Path('figures/notebooks') / parts[1]
        if len(parts) == 2 and parts[0] == 'nbs' and parts[1].endswith('.ipynb'): return repo_rel
        if parts[:2] == ('figures', 'notebooks') and len(parts) == 3 and parts[2] in self.exp_nbs: return repo_rel
        if repo_rel == Path('figures/RESULTS.md'): return repo_rel
        src = ROOT / repo_rel
        if src.is_file():  # a figure, a table, a source file: copied as is (Sphinx serves it or offers it as a download)
            self.write(repo_rel, src.read_bytes())
            return repo_rel
        return None

    def rewrite_target(self, target: str, src: Path, dest: Path) -> str:
        "`target`, a link written in repository file `src`, made relative to its staged copy `dest`."
        if re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target) or target.startswith(('#', '/', '{')): return target
        path, frag = (target.split('#', 1) + [''])[:2]
        try: repo_rel = (ROOT / src.parent / path).resolve().relative_to(ROOT)
        except ValueError: return target
        site = self.site_path(repo_rel)
        if site is None: return target
        new = Path(os.path.relpath(site, dest.parent)).as_posix()
        return new + (f'#{frag}' if frag else '')

    def rewrite_links(self, text: str, src: Path, dest: Path) -> str:
        "Rewrite the relative links of markdown `text` (outside code fences) for its staged place."
        out, in_fence = [], False
        for line in text.splitlines(keepends=True):
            if FENCE.match(line): in_fence = not in_fence
            if not in_fence:
                line = MD_LINK.sub(lambda m: m[1] + self.rewrite_target(m[2], src, dest) + m[3], line)
                line = HTML_LINK.sub(lambda m: m[1] + self.rewrite_target(m[2], src, dest) + m[3], line)
            out.append(line)
        return ''.join(out)

    def notebook(self, src: Path, dest: Path, note: str = '', written_in: Path | None = None) -> None:
        """Stage notebook `src` (repository-relative) at `dest`: no hidden cells, no directive lines, outputs kept.
        Its links are relative to `written_in` (default `src`): an executed experiment keeps the links of its nbs/ source."""
        nb = json.loads((ROOT / src).read_text(encoding='utf-8'))
        cells = []
        for cell in nb['cells']:
            source = cell['source'] if isinstance(cell['source'], str) else ''.join(cell['source'])
            if cell['cell_type'] == 'code':
                lines = source.splitlines(keepends=True)
                if any(HIDE.match(l) for l in lines): continue
                source = ''.join(l for l in lines if not DIRECTIVE.match(l))
                if not source.strip() and not cell.get('outputs'): continue  # a cell that held only `#| default_exp`
            elif cell['cell_type'] == 'markdown':
                source = self.rewrite_links(source, written_in or src, dest)
            cell['source'] = source
            cells.append(cell)
        if note:  # after the title cell, so that the page keeps its title
            at = next((i + 1 for i, c in enumerate(cells) if c['cell_type'] == 'markdown'), 0)
            cells.insert(at, {'cell_type': 'markdown', 'id': 'mmp-docs-note', 'metadata': {}, 'source': note})
        nb['cells'] = cells
        self.write(dest, json.dumps(nb, indent=1, ensure_ascii=False) + '\n')

    def markdown(self, src: Path, dest: Path, extra: str = '') -> None:
        self.write(dest, self.rewrite_links((ROOT / src).read_text(encoding='utf-8'), src, dest) + extra)


def lesson_notebooks() -> list[str]:
    "The lesson notebooks, as `make outputs` and its test define them (scripts/notebook_outputs.py)."
    sys.path.insert(0, str(ROOT / 'scripts'))
    from notebook_outputs import lesson_notebooks as lessons
    return [p.name for p in lessons()]


def module_notebooks() -> dict[str, str]:
    "Module name -> the notebook that exports it (its `#| default_exp`), in notebook order."
    mods = {}
    for p in sorted(NBS.glob('*.ipynb')):
        for cell in json.loads(p.read_text(encoding='utf-8'))['cells']:
            src = cell['source'] if isinstance(cell['source'], str) else ''.join(cell['source'])
            m = re.search(r'^\s*#\s*\|\s*default_exp\s+(\S+)', src, re.MULTILINE) if cell['cell_type'] == 'code' else None
            if m: mods.setdefault(m[1], p.name)
    return mods


def api_pages(st: Stager) -> list[str]:
    "One page per module of the package (members from `__all__`); returns the page names in notebook order."
    mods = [p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_')]
    by_nb = module_notebooks()
    mods.sort(key=lambda m: (by_nb.get(m, '~'), m))
    for m in mods:
        nb = by_nb.get(m)
        origin = (f'Exported from [`nbs/{nb}`](../{st.site_path(Path("nbs") / nb).as_posix()}), where each of these '
                  'is explained and checked.\n\n' if nb else '')
        st.write(f'api/{m}.md', f'# `mmp_repro.{m}`\n\n{origin}'
                 f'```{{eval-rst}}\n.. automodule:: mmp_repro.{m}\n   :members:\n   :undoc-members:\n```\n')
    toc = '\n'.join(mods)
    st.write('api/index.md', '# API reference\n\nOne page per module of `mmp_repro`, in the order of the notebooks '
             'that export them; each documents the names in the module\'s `__all__`.\n\n'
             f'```{{toctree}}\n:maxdepth: 1\n\n{toc}\n```\n')
    return mods


def stage(out: Path) -> Stager:
    exps = experiments()
    st = Stager(out, exps)
    lessons = lesson_notebooks()
    for name in lessons: st.notebook(Path('nbs') / name, Path('nbs') / name)

    exp_toc = []
    for e in exps:  # one page per experiment; a notebook run on two datasets has two executed copies
        executed = FIGURES / 'notebooks' / e.kept_name
        dest = Path('figures/notebooks') / e.kept_name
        if executed.is_file(): st.notebook(executed.relative_to(ROOT), dest, written_in=Path('nbs') / e.notebook)
        else:
            note = (':::{note}\nThis page shows the unexecuted source of this experiment, `nbs/' + e.notebook + '`: '
                    'its executed version, `figures/notebooks/' + e.kept_name + '`, is not in this checkout. '
                    '`make reproduce` writes it; `make docs` then shows it here with its outputs.\n:::')
            st.notebook(Path('nbs') / e.notebook, dest, note=note)
        exp_toc.append(f'{e.title} <figures/notebooks/{Path(e.kept_name).stem}>')

    if (FIGURES / 'RESULTS.md').is_file(): st.markdown(Path('figures/RESULTS.md'), Path('figures/RESULTS.md'))
    else: st.write('figures/RESULTS.md', '# Results\n\n`figures/RESULTS.md` is not in this checkout: `make reproduce` writes it.\n')

    api_pages(st)
    st.write('cli.md', (DOCS / 'cli.md').read_text(encoding='utf-8'))

    def toc(caption: str, entries: list[str]) -> str:
        return '\n```{toctree}\n:hidden:\n:caption: ' + caption + '\n\n' + '\n'.join(entries) + '\n```\n'
    tocs = (toc('Lessons', [f'nbs/{Path(n).stem}' for n in lessons]) + toc('Experiments', exp_toc)
            + toc('Results', ['figures/RESULTS']) + toc('Reference', ['API reference <api/index>', 'Command line <cli>']))
    st.markdown(Path('README.md'), Path('index.md'), extra=tocs)

    st.write(MARKER, 'made by docs/stage.py: files here are rewritten or removed on every build\n')
    for path in sorted(out.rglob('*'), reverse=True):  # stale files of an earlier staging, then empty folders
        if path.is_file() and path not in st.written: path.unlink()
        elif path.is_dir() and not any(path.iterdir()): path.rmdir()
    return st


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out', nargs='?', default=str(ROOT / '_docs' / 'src'), help='staging folder (default _docs/src)')
    out = Path(p.parse_args(argv).out).resolve()
    # staging removes every file it did not write: never in a folder of someone else's files
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise SystemExit(f'{out} is not empty and was not made by docs/stage.py: choose an empty or new folder')
    st = stage(out)
    print(f'staged {len(st.written)} files into {out}', file=sys.stderr)


if __name__ == '__main__':
    main()
