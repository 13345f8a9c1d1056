"""MMP-AMS networks and the location module: Table 7 sizes, the batched n-prediction pass, aspect subsets, eq. 8."""
import itertools
import math

import pytest
import torch

from mmp_repro.location import LocationModule, location_nll
from mmp_repro.networks import (ASPECTS, MMPAMS, NET_PRESETS, check_model, net_config,
                                parameter_counts, parameter_table, random_batch)


# Table 7 of the paper (Appendix B), typed from its text rather than taken from PAPER_PARAMETERS:
# the printed count and the place value of its last printed digit.
TABLE7 = {'f_F': (5.3e6, 1e5), 'f_O': (5.3e6, 1e5), 'f_C': (2.2e6, 1e5), 'R': (460e3, 1e4), 'P': (2.0e6, 1e5),
          'total': (15e6, 1e6)}


def test_paper_preset_matches_table7():
    table = parameter_table(MMPAMS(NET_PRESETS['paper'])).set_index('sub-network')
    assert list(table.index) == list(TABLE7)
    assert list(table.columns) == ['ours', 'paper']
    # agreeing with a rounded figure means rounding to it: within half of its last printed digit
    off = {k: int(table.loc[k, 'ours']) for k, (printed, digit) in TABLE7.items()
           if abs(table.loc[k, 'ours'] - printed) > digit / 2}
    assert not off, f'our counts do not round to Table 7: {off}'
    assert table.loc['R', 'ours'] == 7 * (256 * 256 + 256)
    assert dict(table.paper) == {k: int(printed) for k, (printed, _) in TABLE7.items()}, 'PAPER_PARAMETERS is not Table 7'


@pytest.mark.parametrize('overrides', [{}, {'width': 0.5}, {'state_dim': 128}, {'r_layers': 3, 'crop_size': 32}])
def test_parameter_counts_follow_the_architecture(overrides):
    cfg = net_config('paper', **overrides)
    counts = parameter_counts(MMPAMS(cfg))
    assert counts['total'] == sum(v for k, v in counts.items() if k != 'total'), counts
    # P and R by hand: 4x4 convolutions with biases, then linear layers with biases
    ch = cfg.channels(cfg.conv_channels)
    convs = sum(16 * a * b + b for a, b in zip((cfg.in_channels, *ch[:-1]), ch))
    assert counts['P'] == convs + (ch[-1] * (cfg.crop_size // 16) ** 2 + 1) * cfg.state_dim
    assert counts['R'] == cfg.r_layers * (cfg.state_dim + 1) * cfg.state_dim
    if overrides: assert counts['total'] != parameter_counts(MMPAMS(NET_PRESETS['paper']))['total'], f'{overrides} left the count as it was'


def test_parameters_do_not_depend_on_n_preds():
    counts = {n: parameter_counts(MMPAMS(net_config('smoke', n_preds=n)))['total'] for n in (1, 3, 7)}
    assert len(set(counts.values())) == 1, counts


def _naive_predictions(model: MMPAMS, x: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    "One sample and one k at a time, with h_k built by applying R's step k times: the paper's definition."
    out = {a: [] for a in model.aspects}
    for b in range(x.shape[0]):
        xb = x[b:b + 1]
        h = model.P(xb)
        per_k = {a: [] for a in model.aspects}
        for _ in range(n):
            h = model.R.step(h)
            for a in model.aspects:
                per_k[a].append(model.heads[a](xb, h[:, None])[:, 0])
        for a in model.aspects:
            out[a].append(torch.cat(per_k[a]))
    return {a: torch.stack(v) for a, v in out.items()}


@pytest.mark.parametrize('preset,n', [('smoke', 1), ('smoke', 4), ('quick', 3)])
def test_batched_pass_equals_per_k_reference(preset, n):
    # float64 and a tight tolerance: at initialisation a mix-up of samples or of k changes outputs by ~1e-6 only
    torch.manual_seed(0)
    model = MMPAMS(NET_PRESETS[preset]).double().eval()
    x = torch.rand(3, 3, model.cfg.crop_size, model.cfg.crop_size, dtype=torch.float64)
    with torch.no_grad():
        batched = model(x, n_preds=n)
        naive = _naive_predictions(model, x, n)
    for a in ASPECTS:
        assert batched[a].shape == naive[a].shape
        torch.testing.assert_close(batched[a], naive[a], rtol=1e-10, atol=1e-12)


def test_predictions_differ_across_k():
    torch.manual_seed(0)
    model = MMPAMS(NET_PRESETS['smoke'])
    with torch.no_grad(): preds = model(torch.rand(2, 3, 16, 16), n_preds=3)
    for a in ASPECTS:
        assert (preds[a][:, 0] - preds[a][:, 1]).abs().max() > 1e-6, a


@pytest.mark.parametrize('aspects', [''.join(c) for r in (1, 2, 3) for c in itertools.combinations(ASPECTS, r)])
def test_aspect_subsets(aspects):
    cfg = NET_PRESETS['smoke']
    model = MMPAMS(cfg, aspects=aspects)
    preds = model(torch.rand(2, 3, cfg.crop_size, cfg.crop_size))
    assert tuple(preds) == tuple(aspects)
    counts = parameter_counts(model)
    assert all((counts[f'f_{a}'] > 0) == (a in aspects) for a in ASPECTS)
    assert {k.split('.')[1] for k in model.state_dict() if k.startswith('heads.')} == set(aspects)
    check_model(model, random_batch(cfg, seed=3))


def test_check_model_catches_wrong_shapes():
    class Broken(MMPAMS):
        def forward(self, x, n_preds=None):
            out = super().forward(x, n_preds)
            return out | {'C': out['C'][..., :10]}
    with pytest.raises(AssertionError, match='output shapes'):
        check_model(Broken(NET_PRESETS['smoke']))


def test_location_nll_is_normal_log_prob_without_constant():
    torch.manual_seed(0)
    alpha, beta, x = torch.rand(5, 4), torch.rand(5, 4) * 0.3 + 0.01, torch.rand(5, 4)
    ref = -torch.distributions.Normal(alpha, beta).log_prob(x)
    nll = location_nll(alpha, beta, x)
    assert nll.shape == (5, 4)
    torch.testing.assert_close(nll + 0.5 * math.log(2 * math.pi), ref)
    torch.testing.assert_close(location_nll(alpha, beta, x, include_constant=True), ref)


def test_location_module_outputs_positive_std():
    f = LocationModule(min_std=1e-3)
    with torch.no_grad():
        f.net[-1].bias[4:] = -50.0  # drive softplus to zero: the floor must hold
        alpha, beta = f(torch.eye(80)[:4])
    assert alpha.shape == beta.shape == (4, 4)
    assert (beta >= 1e-3).all()
