"""Tests of the MIA modules (engine/mia): shapes, paper properties, routing, freezing, training."""

from __future__ import annotations

import pytest
import torch

from engine.mia.baseline_ps import PersonSpecificEncoder
from engine.mia.config import ModelConfig
from engine.training.losses import code_loss, shape_loss, texture_loss, total_loss
from engine.mia.model import MIA, count_parameters
from engine.mia.texture import IdentityCodeSpace

V = 50
N = 4
IDENTITIES = ["alice", "bob"]


@pytest.fixture(autouse=True)
def seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cfg() -> ModelConfig:
    return ModelConfig.tiny(image_size=32)


@pytest.fixture
def template() -> torch.Tensor:
    return torch.randn(V, 3) * 50.0


@pytest.fixture
def model(cfg: ModelConfig, template: torch.Tensor) -> MIA:
    mia = MIA(cfg, template)
    for name in IDENTITIES:
        mia.add_identity(name, torch.randn(200, cfg.latent_dim))
    return mia


@pytest.fixture
def batch(cfg: ModelConfig, template: torch.Tensor) -> dict:
    neutral = template + torch.randn(N, V, 3)
    return {
        "images": torch.rand(N, 3, cfg.image_size, cfg.image_size),
        "neutral": neutral,
        "names": ["alice", "bob", "alice", "bob"],
        "mesh": neutral + torch.randn(N, V, 3) * 3.0,
        "code": torch.randn(N, cfg.latent_dim),
    }


def with_random_output_layer(model: MIA) -> MIA:
    """G's output layer starts at zero, which blocks the shape gradient to everything before it
    until the first step; give it small weights where a test needs that gradient at once."""
    torch.nn.init.normal_(model.shape_network.output_layer.weight, std=0.01)
    return model


def test_config_round_trip_and_validation() -> None:
    cfg = ModelConfig.paper(vertex_count=7306)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert (cfg.image_size, cfg.blocks, cfg.convs_per_block) == (192, 5, 10)
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="even"):
        ModelConfig(convs_per_block=3)
    with pytest.raises(ValueError, match="feature map"):
        ModelConfig(image_size=32, blocks=5)


def test_output_shapes(model: MIA, batch: dict, cfg: ModelConfig) -> None:
    out = model(batch["images"], batch["neutral"], batch["names"])
    assert out.embedding.shape == (N, 2 * cfg.embed_dim)
    assert out.mesh.shape == (N, V, 3)
    assert out.code is not None and out.code.shape == (N, cfg.latent_dim)
    assert model.cfg.vertex_count == V
    assert model(batch["images"], batch["neutral"]).code is None
    assert model(batch["images"], batch["neutral"], ["alice", "carol", "bob", "bob"]).code is None
    single = model(batch["images"], batch["neutral"][0])
    assert single.mesh.shape == (N, V, 3)


def test_uint8_and_float_images_agree(model: MIA, batch: dict) -> None:
    as_uint8 = (batch["images"] * 255).round().to(torch.uint8)
    e_uint8 = model.backbone(as_uint8)
    e_float = model.backbone(as_uint8.float() / 255.0)
    torch.testing.assert_close(e_uint8, e_float, rtol=1e-4, atol=1e-4)


def test_untrained_shape_network_returns_the_neutral(model: MIA, batch: dict) -> None:
    out = model(batch["images"], batch["neutral"])
    assert torch.equal(out.mesh, batch["neutral"])


def test_adaptation_layer_has_no_bias(model: MIA) -> None:
    for adapter in model.texture.adapters.values():
        assert adapter.linear.bias is None
        assert isinstance(adapter[0], torch.nn.ReLU)


def test_code_space_is_orthonormal_and_round_trips(cfg: ModelConfig) -> None:
    true_basis, _ = torch.linalg.qr(torch.randn(cfg.latent_dim, cfg.pca_dim))
    mean = torch.randn(cfg.latent_dim)
    codes = torch.randn(500, cfg.pca_dim) * torch.linspace(3.0, 0.5, cfg.pca_dim) @ true_basis.T
    codes = codes + mean
    space = IdentityCodeSpace.fit(codes, cfg.pca_dim)
    eye = torch.eye(cfg.pca_dim)
    torch.testing.assert_close(space.basis.T @ space.basis, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(space.project(space.encode(codes)), codes, atol=1e-4, rtol=1e-5)
    y = torch.randn(7, cfg.pca_dim)
    torch.testing.assert_close(space.encode(space.project(y)), y, atol=1e-4, rtol=1e-5)
    few = IdentityCodeSpace.fit(torch.randn(10, cfg.latent_dim), cfg.pca_dim)
    torch.testing.assert_close(few.basis.T @ few.basis, eye, atol=1e-5, rtol=0)


def test_identity_routing_uses_each_subjects_adapter(model: MIA, batch: dict) -> None:
    before = model(batch["images"], batch["neutral"], batch["names"]).code
    weight = model.texture.adapters["bob"].linear.weight
    with torch.no_grad():
        weight.add_(torch.randn_like(weight))
    after = model(batch["images"], batch["neutral"], batch["names"]).code
    assert before is not None and after is not None
    bob = torch.tensor([n == "bob" for n in batch["names"]])
    assert torch.equal(before[~bob], after[~bob])
    assert not torch.isclose(before[bob], after[bob]).all(dim=1).any()


def test_routing_matches_direct_projection(model: MIA, batch: dict) -> None:
    out = model(batch["images"], batch["neutral"], batch["names"])
    for i, name in enumerate(batch["names"]):
        space = model.texture.code_spaces[name]
        direct = space.project(model.texture.adapters[name](out.embedding[i : i + 1]))
        torch.testing.assert_close(out.code[i : i + 1], direct)
    with pytest.raises(KeyError, match="carol"):
        model.texture(out.embedding, ["alice", "carol", "bob", "bob"])


def test_freeze_shared_trains_only_the_adapters(model: MIA, batch: dict) -> None:
    model = with_random_output_layer(model)
    model.freeze_shared()
    shared = {
        k: v.clone()
        for k, v in model.named_parameters()
        if k.startswith(("backbone.", "shape_network."))
    }
    adapters = {k: v.clone() for k, v in model.texture.named_parameters()}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model(batch["images"], batch["neutral"], batch["names"])
    code_loss(out.code, batch["code"]).backward()
    optimiser.step()
    for k, v in model.named_parameters():
        if k in shared:
            assert torch.equal(v, shared[k]), k
            assert not v.requires_grad
    for k, v in model.texture.named_parameters():
        assert not torch.equal(v, adapters[k]), k
    model.freeze_shared(False)
    assert all(p.requires_grad for p in model.parameters())


def test_gradient_reaches_the_backbone_from_both_losses(model: MIA, batch: dict) -> None:
    model = with_random_output_layer(model)
    out = model(batch["images"], batch["neutral"], batch["names"])
    losses = {
        "shape": shape_loss(out.mesh, batch["mesh"]),
        "texture": texture_loss(out.code, batch["code"]),
    }
    for name, loss in losses.items():
        model.zero_grad()
        loss.backward(retain_graph=True)
        for branch in (model.backbone.eyes, model.backbone.mouth):
            grads = [p.grad for p in branch.parameters()]
            assert all(g is not None for g in grads), name
            assert sum(g.abs().sum() for g in grads) > 0, name


def test_loss_goes_down_on_a_fixed_batch(model: MIA, batch: dict, cfg: ModelConfig) -> None:
    codes = torch.stack([  # targets inside each subject's code space, as real codes are
        model.texture.code_spaces[name].project(torch.randn(cfg.pca_dim)) for name in batch["names"]
    ])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    weights = (torch.rand(V) > 0.2).float()
    history = []
    for _ in range(30):
        out = model(batch["images"], batch["neutral"], batch["names"])
        terms = total_loss(out.mesh, batch["mesh"], weights, out.code, codes)
        optimiser.zero_grad()
        terms.total.backward()
        optimiser.step()
        history.append(terms.total.item())
    assert history[-1] < 0.7 * history[0], history


def test_loss_normalisation_and_masks() -> None:
    pred = torch.zeros(2, V, 3)
    target = torch.zeros(2, V, 3)
    target[..., 0] = 1.0  # 1 mm everywhere -> 0.01 cm^2
    torch.testing.assert_close(shape_loss(pred, target), torch.tensor(0.01))
    target[:, 0, 0] = 1000.0
    mask = torch.ones(V)
    mask[0] = 0.0
    torch.testing.assert_close(shape_loss(pred, target, mask), torch.tensor(0.01))
    torch.testing.assert_close(shape_loss(pred, target, mask.expand(2, V)), torch.tensor(0.01))
    z = torch.zeros(2, 8)
    tex = torch.zeros(2, 3, 4, 4)
    torch.testing.assert_close(
        texture_loss(z, z + 1.0, tex, tex + 0.1, torch.ones(2, 1, 4, 4), lambda_t=100.0),
        torch.tensor(8.0 + 1.0),
    )
    terms = total_loss(pred, torch.zeros(2, V, 3) + 1.0, lambda_s=100.0)
    torch.testing.assert_close(terms.total, torch.tensor(3.0))


def test_person_specific_encoder_matches_mia_size(model: MIA, batch: dict) -> None:
    ps = PersonSpecificEncoder.matched_to(model, subject="alice")
    counts = model.parameter_count()
    mia_one_identity = counts["backbone"] + counts["shape"] + counts["texture"] // 2
    assert abs(count_parameters(ps) - mia_one_identity) <= 0.1 * mia_one_identity
    out = ps(batch["images"], batch["neutral"], ["alice"] * N)
    assert out.code is not None and out.code.shape == (N, model.cfg.latent_dim)
    assert torch.equal(out.mesh, batch["neutral"])
    assert ps(batch["images"], batch["neutral"], batch["names"]).code is None


def test_paper_config_size() -> None:
    cfg = ModelConfig.paper()
    model = MIA(cfg, torch.zeros(7306, 3))
    model.add_identity("subject", torch.randn(300, cfg.latent_dim))
    counts = model.parameter_count()
    print(f"paper MIA parameters (V=7306, one identity): {counts}")
    assert counts["total"] > 5_000_000
    out = model(torch.rand(1, 3, 192, 192), torch.zeros(7306, 3), ["subject"])
    assert out.mesh.shape == (1, 7306, 3) and out.code is not None


def test_backbone_embeds_different_images_differently():
    """Regression: instance norm before global pooling made e constant for every input."""
    import torch
    from engine.mia.backbone import Backbone
    from engine.mia.config import ModelConfig
    torch.manual_seed(0)
    b = Backbone(ModelConfig.tiny())
    images = torch.rand(6, 3, 32, 32) * 255
    e = b(images)
    assert e.std(0).mean() > 1e-3, "the backbone maps different images to the same embedding"
