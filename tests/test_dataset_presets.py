"""Each paper dataset resolves to the settings of Section 5.2 of the paper (written out here, not read from the code),
through `PipelineConfig.for_scale` and the command line; explicit settings win; street and folder keep theirs."""
import pytest

from mmp_repro.cli import _pipeline_config, build_parser, main
from mmp_repro.detection import detection_config
from mmp_repro.pipeline import PipelineConfig

# Section 5.2. The paper's tuple (γ, w_I, w_F, w_C, w_BX, w_BY, w_BH, w_BW, λ); the code names the aspects
# F (frame, paper I), O (flow, paper F), C (class, paper C) and BX, BY, BH, BW (the location module).
ONES = {'F': 1.0, 'O': 1.0, 'C': 1.0, 'BX': 1.0, 'BY': 1.0, 'BH': 1.0, 'BW': 1.0}
PAPER = {
    'ped2': dict(gamma=0.0, w=ONES, score_thr=0.5, epochs=150, batch_size=64),
    'shanghaitech': dict(gamma=0.0, w=ONES, score_thr=0.7, epochs=400, batch_size=640),
    'avenue': dict(gamma=1.0, w={'F': 1.0, 'O': 0.1, 'C': 0.1, 'BX': 1.0, 'BY': 1.0, 'BH': 1.0, 'BW': 1.0},
                   score_thr=0.7, epochs=150, batch_size=64),
}
COMMON = dict(lam=0.1, delta=0.05, lr=1e-3, min_area=350.0, crop_size=64, mask_patch=4, mask_ratio=0.5)


def resolved(cfg: PipelineConfig) -> dict:
    det = detection_config(cfg.detection_preset)
    # the paper's eight weights; 'B', the location mixture's one aspect (ours), is checked on its own below
    return dict(gamma=cfg.weights.gamma, w={a: v for a, v in cfg.weights.w.items() if a != 'B'}, score_thr=det.score_thr, min_area=det.min_area,
                epochs=cfg.train.epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr, lam=cfg.train.lam,
                delta=cfg.train.delta, crop_size=cfg.net.crop_size, objects_crop=cfg.objects.crop_size,
                mask_patch=cfg.mask_patch, mask_ratio=cfg.mask_ratio)


def cli_config(*argv):
    return _pipeline_config(build_parser().parse_args(['run', '--run-dir', 'x', *argv]))


@pytest.mark.parametrize('dataset', list(PAPER))
def test_full_scale_is_the_papers_settings(dataset):
    want = {**PAPER[dataset], **COMMON, 'objects_crop': 64}
    assert resolved(PipelineConfig.for_scale('full', dataset=dataset, detector='yolov3-tiny')) == want
    assert resolved(cli_config('--dataset', dataset, '--scale', 'full')) == want


@pytest.mark.parametrize('scale, epochs', [('smoke', 1), ('quick', 12)])
@pytest.mark.parametrize('dataset', list(PAPER))
def test_reduced_scales_keep_their_budget_but_the_datasets_weights(dataset, scale, epochs):
    got = resolved(cli_config('--dataset', dataset, '--scale', scale))
    p = PAPER[dataset]
    assert (got['gamma'], got['w'], got['score_thr'], got['min_area']) == (p['gamma'], p['w'], p['score_thr'], 350.0)
    assert (got['epochs'], got['batch_size'], got['lr'], got['lam'], got['delta']) == (epochs, 64, 1e-3, 0.1, 0.05)
    assert (got['mask_patch'], got['mask_ratio']) == (4, 0.5)


def test_explicit_settings_win():
    cfg = cli_config('--dataset', 'avenue', '--scale', 'full', '--score-preset', 'ped2', '--gamma', '0.5',
                     '--detection-preset', 'ped2', '--epochs', '3', '--batch-size', '32')
    got = resolved(cfg)
    assert (got['gamma'], got['w'], got['score_thr'], got['epochs'], got['batch_size']) == (0.5, ONES, 0.5, 3, 32)
    cfg = PipelineConfig.for_scale('full', dataset='shanghaitech', detector='yolov3-tiny', train={'epochs': 2, 'batch_size': 8},
                                   gamma=0.25, detection_preset='none')
    got = resolved(cfg)
    assert (got['epochs'], got['batch_size'], got['gamma'], got['score_thr'], got['min_area']) == (2, 8, 0.25, 0.0, 0.0)
    assert cli_config('--dataset', 'avenue', '--gamma', '0').weights.gamma == 0.0  # an explicit 0 is not "unset"


@pytest.mark.parametrize('scale, epochs, crop', [('smoke', 1, 16), ('quick', 12, 32), ('full', 150, 64)])
@pytest.mark.parametrize('argv', [(), ('--dataset', 'folder', '--root', '.')])
def test_street_and_folder_keep_their_settings(argv, scale, epochs, crop):
    cfg = cli_config('--scale', scale, *argv)
    assert (cfg.detection_preset, cfg.score_preset, cfg.gamma) == ('street', 'ped2', None)
    got = resolved(cfg)
    assert (got['epochs'], got['batch_size'], got['crop_size'], got['gamma'], got['w']) == (epochs, 64, crop, 0.0, ONES)


def test_run_prints_the_resolved_preset(tmp_path, capsys):
    (tmp_path / 'dets').mkdir()
    code = main(['run', '--dataset', 'shanghaitech', '--scale', 'full', '--root', str(tmp_path / 'absent'),
                 '--detections', str(tmp_path / 'dets'), '--run-dir', str(tmp_path / 'run'), '--cache-root', str(tmp_path / 'cache'),
                 '--device', 'cpu', '--no-progress'])
    err = capsys.readouterr().err
    assert code == 1  # the dataset is absent; the settings are printed before anything runs
    assert 'resolved preset: dataset shanghaitech, scale full; defaults: paper, Section 5.2' in err, err
    for says in ('objectness >= 0.7', 'boxes under 350 px dropped', 'gamma=0', 'w_O=1', 'lr=0.001', 'lambda=0.1',
                 'delta=0.05', 'epochs 400, batch 640', '64x64 crops', 'removes 50% of 4x4 px cells'):
        assert says in err, (says, err)
    assert 'differs from' not in err


@pytest.mark.parametrize('dataset', ['ped2', 'shanghaitech', 'avenue', 'street', 'plaza', 'folder'])
def test_the_location_mixture_weighs_like_the_location_module(dataset):
    # one z-score for the whole box, weighted 1 like each of the paper's four box dimensions; it acts only through γ
    w = cli_config('--dataset', dataset, *(['--root', 'x'] if dataset == 'folder' else [])).weights
    assert w.w['B'] == 1.0 and set(w.w) == set(ONES) | {'B'}


def test_the_plaza_runs_on_its_true_boxes_with_the_vtest_thresholds():
    # the plaza is generated like the street: its default detector is the oracle (its true boxes), and a real
    # detector run on it takes the thresholds of vtest.avi, the footage its people are cut from
    cfg = cli_config('--dataset', 'plaza')
    assert (cfg.dataset, cfg.detector, cfg.detection_preset) == ('plaza', 'oracle', 'vtest')
    with pytest.raises(ValueError, match='oracle detector exists only'):
        PipelineConfig.for_scale('smoke', dataset='ped2', detector='oracle')


@pytest.mark.parametrize('dataset, flow', [('street', 'farneback-small'), ('plaza', 'dis'), ('folder', 'dis'), ('ped2', 'dis'),
                                           ('avenue', 'dis'), ('shanghaitech', 'dis')])
def test_each_dataset_has_its_flow_and_the_flag_wins(dataset, flow):
    # the street's small flat sprites get Farneback with a 5 px window; real footage keeps DIS (17a_street_mmp compares them)
    root = ['--root', 'x'] if dataset == 'folder' else []
    assert cli_config('--dataset', dataset, *root).objects.flow == flow
    other = 'dis' if flow != 'dis' else 'farneback-small'
    assert cli_config('--dataset', dataset, *root, '--flow', other).objects.flow == other
    assert PipelineConfig.for_scale('smoke', dataset=dataset, objects={'flow': other}, **({'detector': 'yolov3-tiny'}
                                    if dataset not in ('street', 'plaza') else {})).objects.flow == other


def test_an_unknown_flow_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"flow \(--flow\) must be one of \['dis', 'farneback', 'farneback-small'\], got 'flownet2'"):
        cli_config('--flow', 'flownet2')
