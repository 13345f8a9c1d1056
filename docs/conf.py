"""Sphinx configuration of the mmp_repro site; `make docs` stages the sources (docs/stage.py) and builds with it.

Build: `python docs/stage.py _docs/src && python -m sphinx -b html -c docs _docs/src _docs/html`.
Everything the pages load comes from the site itself: furo ships its CSS and fonts, MathJax 3 is copied
from the `sphinx-mathjax-offline` package into `_static/mathjax`, and myst-nb's ipywidgets scripts (a CDN)
are switched off. Notebooks are rendered with the outputs they were saved with; nothing is executed.
"""
import shutil
import sys
from configparser import ConfigParser
from pathlib import Path

from docutils import nodes
from docutils.transforms import Transform

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_cfg = ConfigParser(delimiters=['='])
_cfg.read(ROOT / 'settings.ini', encoding='utf-8')
_cfg = _cfg['DEFAULT']

project = _cfg['lib_name']
author = _cfg['author']
copyright = _cfg['copyright']
release = version = _cfg['version']

extensions = ['myst_nb', 'sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'sphinx.ext.mathjax', 'sphinxarg.ext']

# Notebooks: saved outputs only.
nb_execution_mode = 'off'
nb_ipywidgets_js = {}       # default: require.js and the widget manager from cdnjs/jsdelivr
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'colon_fence', 'html_image']
myst_heading_anchors = 3    # `#section` links of README.md and the notebooks

# MathJax 3 served by the site: the files of the `sphinx-mathjax-offline` package, copied into
# _static/mathjax (path relative to _static). MyST adds its `processHtmlClass` to this config.
mathjax_path = 'mathjax/tex-chtml.js'
mathjax3_config = {'options': {'processHtmlClass': 'tex2jax_process|mathjax_process|math|output_area'}}

# API reference from the docstrings; `:members:` follows each module's `__all__`.
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True
add_module_names = False    # each page is one module: `pairwise_distance`, not `mmp_repro.losses.pairwise_distance`
default_role = 'code'       # `name` in a docstring is code, as in the notebooks' markdown
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = 'furo'
html_title = project
html_static_path = ['_static']
html_favicon = '_static/favicon.svg'
html_copy_source = False
html_show_sourcelink = False


def _mathjax_dir() -> Path:
    from importlib.metadata import distribution
    return Path(distribution('sphinx-mathjax-offline').locate_file('sphinx-mathjax-offline/static/mathjax'))


def _copy_mathjax(app, exc):
    "Put MathJax into the site's `_static/mathjax` (once: 24 MB that never change)."
    if exc is not None or app.builder.format != 'html': return
    dest = Path(app.outdir) / '_static' / 'mathjax'
    if not (dest / 'tex-chtml.js').is_file():
        shutil.copytree(_mathjax_dir(), dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns('__pycache__'))


class NestedTransitions(Transform):
    "A `---` inside a notebook output (nbdev's `show_doc` starts with one) becomes `<hr>`: docutils allows transitions only between sections."
    default_priority = 829  # just before docutils' own check (misc.Transitions, 830)

    def apply(self):
        for t in list(self.document.findall(nodes.transition)):
            if not isinstance(t.parent, (nodes.document, nodes.section)):
                t.replace_self(nodes.raw('', '<hr class="docutils"/>', format='html'))


def _escape_bars(app, what, name, obj, options, lines):
    "The docstrings are markdown-flavoured (`|x - y|` is a norm), but in reST `|x|` is a substitution: escape `|` outside code."
    for i, line in enumerate(lines):
        parts = line.split('`')
        lines[i] = '`'.join(p.replace('|', '\\|') if k % 2 == 0 else p for k, p in enumerate(parts))


def setup(app):
    app.add_transform(NestedTransitions)
    app.connect('autodoc-process-docstring', _escape_bars)
    app.connect('build-finished', _copy_mathjax)
