"""SimCLR, MoCo v2, BYOL and SimSiam on one base class (single process)."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from timm_ccrop.methods import (
    BYOL,
    METHODS,
    MoCo,
    SiameseMethod,
    SimCLR,
    SimSiam,
    build_method,
    losses,
)
from timm_ccrop.methods.losses import negative_cosine, nt_xent_loss

SIZE = 32
SMALL = {  # narrow heads: the tests are about wiring, not capacity
    "simclr": dict(hidden_dim=32, out_dim=16),
    "moco": dict(hidden_dim=32, out_dim=16, queue_size=64),
    "byol": dict(hidden_dim=32, out_dim=16, pred_hidden_dim=32),
    "simsiam": dict(hidden_dim=32, out_dim=32, pred_hidden_dim=8),
}


def make_backbone(name: str = "test_resnet") -> torch.nn.Module:
    kwargs = {"img_size": SIZE} if "vit" in name else {}
    return timm.create_model(name, num_classes=0, **kwargs)


def make_method(method: str, backbone: str = "test_resnet", seed: int = 0,
                **hparams: object) -> SiameseMethod:
    torch.manual_seed(seed)
    return build_method(method, make_backbone(backbone), **{**SMALL[method], **hparams})


def make_views(batch: int = 4, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, SIZE, SIZE, generator=generator) for _ in range(2)]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("backbone", ["test_resnet", "test_vit"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_step_trains_online_weights_only(method: str, backbone: str) -> None:
    model = make_method(method, backbone).train()
    before = snapshot(model)
    optimizer = torch.optim.SGD(model.parameter_groups(weight_decay=1e-4), lr=0.1)
    out = model(make_views())
    assert set(out) >= {"loss", "pos_sim"}
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"]) and out["loss"].requires_grad
    for key, value in out.items():
        assert key == "loss" or not value.requires_grad, key
        assert torch.isfinite(value), key
    out["loss"].backward()
    optimizer.step()

    after = snapshot(model)
    for prefix in ("backbone.", "projector."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
    if "predictor" in dict(model.named_children()):
        assert any(not torch.equal(before[k], after[k])
                   for k in before if k.startswith("predictor."))
    # Momentum targets get no gradient; only on_after_optimizer_step moves them.
    targets = [name for name, _ in model.named_parameters(remove_duplicate=False)
               if "_momentum." in name]
    assert bool(targets) == (method in ("moco", "byol"))
    for name in targets:
        assert model.get_parameter(name).grad is None
        assert torch.equal(before[name], after[name])
    model.on_after_optimizer_step(0.5)
    for name in targets:
        online = after[name.replace("_momentum.", ".")]
        if not torch.equal(before[name], online):
            assert not torch.equal(model.get_parameter(name), after[name]), name


def test_momentum_update_follows_the_formula() -> None:
    model = make_method("byol", "test_vit", momentum=0.9)
    with torch.no_grad():  # online and target apart, so the update is visible
        for parameter in model.backbone.parameters():
            parameter.add_(torch.randn_like(parameter))
    online = snapshot(model.backbone) | {f"p.{k}": v for k, v in snapshot(model.projector).items()}
    target = (snapshot(model.backbone_momentum)
              | {f"p.{k}": v for k, v in snapshot(model.projector_momentum).items()})
    model.on_after_optimizer_step(0.3)
    assert model.current_momentum == 0.9
    updated = (snapshot(model.backbone_momentum)
               | {f"p.{k}": v for k, v in snapshot(model.projector_momentum).items()})
    parameter_names = {n for n, _ in model.backbone.named_parameters()}
    parameter_names |= {f"p.{n}" for n, _ in model.projector.named_parameters()}
    for name in parameter_names:
        expected = 0.9 * target[name] + (1 - 0.9) * online[name]
        torch.testing.assert_close(updated[name], expected, rtol=1e-6, atol=1e-7)
    assert all(not p.requires_grad for p in model.backbone_momentum.parameters())


def test_momentum_schedules() -> None:
    constant = make_method("byol", momentum=0.996)
    assert [constant.momentum_at(p) for p in (0.0, 0.5, 1.0)] == [0.996] * 3
    cosine = make_method("byol", momentum=0.996, momentum_schedule="cosine")
    assert cosine.momentum_at(0.0) == pytest.approx(0.996)
    assert cosine.momentum_at(0.5) == pytest.approx(0.998)
    assert cosine.momentum_at(1.0) == pytest.approx(1.0)
    assert cosine.momentum_at(0.25) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)
    cosine.on_after_optimizer_step(0.5)
    assert cosine.current_momentum == pytest.approx(0.998)
    cosine.on_after_optimizer_step(1.5)  # a few steps more than planned: saturates
    assert cosine.current_momentum == pytest.approx(1.0)
    with pytest.raises(ValueError, match="progress"):
        cosine.on_after_optimizer_step(-0.1)
    with pytest.raises(ValueError, match="momentum_schedule"):
        make_method("moco", momentum_schedule="linear")


def test_moco_enqueue_wraps_around() -> None:
    model = make_method("moco", queue_size=10, out_dim=4)
    keys = F.normalize(torch.randn(25, 4), dim=1)
    model.enqueue(keys[:4])
    assert int(model.queue_ptr) == 4 and torch.equal(model.queue[:4], keys[:4])
    model.enqueue(keys[4:12])  # rows 4..9 then 0..1
    assert int(model.queue_ptr) == 2
    assert torch.equal(model.queue[4:], keys[4:10]) and torch.equal(model.queue[:2], keys[10:12])
    assert torch.equal(model.queue[2:4], keys[2:4])

    one_by_one = make_method("moco", queue_size=10, out_dim=4)
    one_by_one.enqueue(keys[:2])
    for key in keys:  # a batch larger than the queue ends as if enqueued key by key
        one_by_one.enqueue(key[None])
    model.enqueue(keys)
    assert int(model.queue_ptr) == int(one_by_one.queue_ptr) == (2 + 25) % 10
    assert torch.equal(model.queue, one_by_one.queue)


def test_moco_forward_enqueues_its_keys_and_state_dict_carries_the_queue() -> None:
    model = make_method("moco", "test_vit", queue_size=6).train()
    first, second = make_views(batch=4)
    model.enqueue(F.normalize(torch.randn(3, 16), dim=1))  # pointer 3: the batch wraps
    keys, all_keys = model.keys(second)
    assert torch.equal(keys, all_keys)  # one process: local batch == global batch
    queue_before = model.queue.clone()
    model([first, second])
    assert int(model.queue_ptr) == 1
    torch.testing.assert_close(model.queue[[3, 4, 5, 0]], keys)
    assert torch.equal(model.queue[1:3], queue_before[1:3])
    assert torch.allclose(model.queue.norm(dim=1), torch.ones(6))

    state = model.state_dict()
    assert {"queue", "queue_ptr"} <= set(state)
    fresh = make_method("moco", "test_vit", seed=5, queue_size=6)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.queue, model.queue) and int(fresh.queue_ptr) == 1


def test_moco_symmetric_enqueues_both_views() -> None:
    model = make_method("moco", symmetric=True, queue_size=64)
    out = model(make_views(batch=4))
    assert torch.isfinite(out["loss"]) and int(model.queue_ptr) == 8


def test_moco_queue_starts_the_same_whatever_the_seed() -> None:
    # DDP does not broadcast the queue: every process must start from the same one.
    assert torch.equal(make_method("moco", seed=0).queue, make_method("moco", seed=1).queue)


def test_moco_warns_if_queue_exceeds_dataset() -> None:
    model = make_method("moco", queue_size=64)
    with pytest.warns(UserWarning, match="on purpose"):
        assert model.warn_if_queue_exceeds(50)
    assert not model.warn_if_queue_exceeds(64)


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent written out: each of the 2N anchors against the 2N - 1 others."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        similarities = [(z[i] @ z[j]) / temperature for j in range(2 * n) if j != i]
        numerator = torch.exp((z[i] @ z[positive]) / temperature)
        total = total - torch.log(numerator / torch.stack(similarities).exp().sum())
    return total / (2 * n)


def test_nt_xent_equals_the_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    loss, logs = nt_xent_loss(z1, z2, temperature=0.5)
    torch.testing.assert_close(loss.double(), reference_nt_xent(z1, z2, 0.5), rtol=1e-5, atol=1e-6)

    # The same as a cross-entropy over the 2N x 2N similarity matrix, diagonal masked.
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / 0.1).masked_fill(torch.eye(10, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(5, 10), torch.arange(5)])
    torch.testing.assert_close(nt_xent_loss(z1, z2, 0.1)[0], F.cross_entropy(logits, targets))
    torch.testing.assert_close(logs["pos_sim"], F.cosine_similarity(z1, z2).mean())


def test_simclr_module_loss_and_temperature_scale() -> None:
    model = make_method("simclr", temperature=0.5, base_temperature=0.07).eval()
    first, second = make_views(batch=3)
    with torch.no_grad():
        z = model.projector(model.backbone(torch.cat([first, second])))
        out = model([first, second])
    expected = reference_nt_xent(z[:3], z[3:], 0.5) * (0.5 / 0.07)
    torch.testing.assert_close(out["loss"].double(), expected, rtol=1e-5, atol=1e-6)


def test_simsiam_stops_the_gradient_of_the_target() -> None:
    prediction = torch.randn(4, 8, requires_grad=True)
    target = torch.randn(4, 8, requires_grad=True)
    negative_cosine(prediction, target).backward()
    assert prediction.grad is not None and target.grad is None


def test_byol_loss_is_two_minus_two_cosines() -> None:
    model = make_method("byol").eval()
    first, second = make_views(batch=3)
    with torch.no_grad():
        out = model([first, second])
        p1 = model.predictor(model.projector(model.backbone(first)))
        p2 = model.predictor(model.projector(model.backbone(second)))
        t1 = model.projector_momentum(model.backbone_momentum(first))
        t2 = model.projector_momentum(model.backbone_momentum(second))
    cosines = F.cosine_similarity(p1, t2).mean() + F.cosine_similarity(p2, t1).mean()
    torch.testing.assert_close(out["loss"], 4 - 2 * cosines)


def test_parameter_groups_exclude_norm_bias_and_targets() -> None:
    model = make_method("moco", "test_vit")
    groups = model.parameter_groups(weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})  # no duplicates
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in grouped} == trainable  # targets (no grad) left out
    assert not any("_momentum." in names[id(p)] for p in grouped)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"decay", "no_decay"} and by_name["decay"]["weight_decay"] == 0.05
    assert by_name["no_decay"]["weight_decay"] == 0.0
    no_decay = {names[id(p)] for p in by_name["no_decay"]["params"]}
    assert {"backbone.pos_embed", "backbone.cls_token"} <= no_decay
    assert all(names[id(p)].endswith(("bias", "weight")) for p in by_name["no_decay"]["params"]
               if p.ndim == 1)
    assert all(p.ndim > 1 for p in by_name["decay"]["params"])
    assert all(p.ndim <= 1 or names[id(p)] in {"backbone.pos_embed", "backbone.cls_token"}
               for p in by_name["no_decay"]["params"])

    everything = model.parameter_groups(weight_decay=0.05, exclude_norm_bias=False)
    assert len(everything) == 1 and everything[0]["weight_decay"] == 0.05
    assert all(not g["fixed_lr"] for g in groups + everything)


def test_simsiam_marks_predictor_groups_fixed_lr() -> None:
    model = make_method("simsiam")
    groups = model.parameter_groups(weight_decay=1e-4)
    fixed = {id(p) for g in groups if g["fixed_lr"] for p in g["params"]}
    assert fixed == {id(p) for p in model.predictor.parameters()}
    assert {g["name"] for g in groups} == {"decay", "no_decay", "fixed_lr_decay",
                                           "fixed_lr_no_decay"}
    unfixed = make_method("simsiam", fixed_predictor_lr=False)
    assert not any(g["fixed_lr"] for g in unfixed.parameter_groups(weight_decay=1e-4))


def test_build_method_and_input_errors() -> None:
    assert {name: type(make_method(name)) for name in METHODS} == {
        "simclr": SimCLR, "moco": MoCo, "byol": BYOL, "simsiam": SimSiam}
    assert isinstance(build_method("SimCLR", make_backbone()), SimCLR)
    with pytest.raises(ValueError, match="choose from.*byol.*moco.*simclr.*simsiam"):
        build_method("swav", make_backbone())
    with pytest.raises(TypeError, match="queue_size"):
        build_method("simclr", make_backbone(), queue_size=4096)
    with pytest.raises(ValueError, match="num_classes=0"):
        build_method("byol", timm.create_model("test_resnet", num_classes=10))
    with pytest.raises(ValueError, match="2 views"):
        make_method("simsiam")(make_views()[:1])
    assert MoCo.default_hparams()["temperature"] == 0.2
    assert SimCLR.default_hparams() == {"hidden_dim": 512, "out_dim": 128, "temperature": 0.5,
                                        "base_temperature": None}


def test_contrastive_logits_stay_fp32_under_autocast() -> None:
    generator = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(6, 16, generator=generator).bfloat16() for _ in range(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = nt_xent_loss(z1, z2, 0.2)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, nt_xent_loss(z1.float(), z2.float(), 0.2)[0])
    model = make_method("moco")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_views())
    assert out["loss"].dtype == torch.float32 and model.queue.dtype == torch.float32


def test_sync_batchnorm_flags_follow_the_official_recipes() -> None:
    assert {name: cls.sync_batchnorm for name, cls in METHODS.items()} == {
        "simclr": True, "moco": False, "byol": True, "simsiam": True}


def test_losses_are_public_units() -> None:
    torch.manual_seed(0)
    query, key, queue = torch.randn(6, 8), F.normalize(torch.randn(6, 8)), F.normalize(
        torch.randn(20, 8))
    loss, logits = losses.info_nce(query, key, queue, 0.2)
    q = F.normalize(query)
    expected = torch.cat([(q * key).sum(1, keepdim=True), q @ queue.T], 1) / 0.2
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(loss, F.cross_entropy(expected, torch.zeros(6, dtype=torch.long)))
    p, z = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    cosine = F.cosine_similarity(p, z, dim=1)
    torch.testing.assert_close(losses.normalized_mse(p, z), (2 - 2 * cosine).mean())
    losses.normalized_mse(p, z).backward()
    assert z.grad is None  # the target is detached
