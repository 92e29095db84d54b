import torch

from dgncore.models.generators import (
    Encoder,
    FeatureLayer,
    Generator,
    GeneratorConfig,
    paper_parameter_count,
)


def test_paper_parameter_count_matches_table_1():
    assert paper_parameter_count() == 5_240_841


def test_paper_sizes():
    assert GeneratorConfig().native_size == 224
    assert GeneratorConfig(stages=5).native_size == 113
    g = Generator(GeneratorConfig(width=0.0625, stages=4, out_size=48))
    x = g(torch.randn(2, 3200))
    assert x.shape == (2, 3, 48, 48) and 0 <= x.min() and x.max() <= 1


def test_grouped_generators_are_independent_models():
    """Row k of a grouped G equals a separate G holding group k's weights."""
    cfg = GeneratorConfig(width=0.0625, stages=3, out_size=30)
    torch.manual_seed(0)
    grouped = Generator(cfg, n_models=3)
    feats = torch.randn(3, 3200)
    out = grouped(feats)
    single = Generator(cfg, n_models=1)
    k = 1
    sd = {}
    for (name, p_g), (_, p_s) in zip(grouped.state_dict().items(), single.state_dict().items()):
        n = p_s.shape[0] if p_s.dim() else 0
        sd[name] = p_g[k * n : (k + 1) * n] if p_s.dim() else p_g
    single.load_state_dict(sd)
    assert torch.allclose(single(feats[k : k + 1])[0], out[k], atol=1e-5)


def test_feature_noise_only_in_training():
    layer = FeatureLayer(2, 16, noise="additive", sigma=2.0)
    layer.eval()
    assert torch.equal(layer(), torch.ones(2, 16))
    layer.train()
    assert not torch.equal(layer(), torch.ones(2, 16))


def test_encoder_output_is_a_code():
    enc = Encoder(width=0.0625, n_features=3200, hidden=64)
    z = enc(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, 3200) and (z >= 0).all()
