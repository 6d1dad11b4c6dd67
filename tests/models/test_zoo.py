"""Every named model through one shared tester; the factory's overrides, records and errors."""

import pytest
import timm
import torch

import sdnseg
from sdnseg.models import (
    MODELS,
    ModelConfig,
    create_model,
    get_config,
    list_models,
    segmentation_loss,
)
from sdnseg.models.losses import MaskFormerLoss
from sdnseg.nn import (
    SDN,
    CentralDifferenceConv2d,
    ConcatSDN,
    MultiScaleSDN,
    SemanticConv2d,
    SingleScaleSDN,
)

CPU_SCALE = ("fcn_r18", "semfpn_r18", "segmenter_vitt", "ocrnet_hr18s", "maskformer_efflite0")
# Segmentors; the SegFix networks (boundary and direction maps, no SDN twin) are tested in
# test_segfix.py.
SEGMENTORS = [name for name, config in MODELS.items() if config.decoder != "segfix"]


@pytest.fixture(scope="class")
def model(request):
    """The tester class's model, built once per class (a module-level fixture: pytest 10 drops
    class-scoped fixtures defined as instance methods)."""
    torch.manual_seed(0)
    return create_model(request.cls.name, request.cls.num_classes)


class ModelTester:
    """Shapes and gradients of one named model (subclass and set ``name``, ``size``)."""

    name: str
    size: int = 64
    odd_size: tuple[int, int] | None = (97, 131)
    num_classes = 3

    def test_train_step_shapes_and_gradients(self, model):
        model.train()
        target = torch.randint(0, self.num_classes, (2, self.size, self.size))
        outputs = model.forward_train(torch.randn(2, 3, self.size, self.size))
        aux = dict(outputs.aux)
        if model.config.decoder == "maskformer":  # per-layer set predictions, masks at stride 4
            queries = model.head.query_embed.num_embeddings
            size = self.size // 4
            assert aux.pop("class_logits").shape == (6, 2, queries, self.num_classes + 1)
            assert aux.pop("mask_logits").shape == (6, 2, queries, size, size)
        for logits in (outputs.logits, *aux.values()):
            assert logits.shape == (2, self.num_classes, self.size, self.size)
        assert ("aux" in outputs.aux) == model.has_aux
        model.zero_grad()
        loss = MaskFormerLoss() if model.config.decoder == "maskformer" else segmentation_loss
        loss(outputs, target).backward()
        for name, param in model.named_parameters():
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
        assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())

    def test_eval_any_size(self, model):
        if self.odd_size is None:
            pytest.skip("no odd size for this model")
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, *self.odd_size))
        assert out.shape == (1, self.num_classes, *self.odd_size)


class TestFCNR18D8(ModelTester):
    name = "fcn_r18d8"


class TestFCNR18D8SDN(ModelTester):
    name = "fcn_r18d8_sdn"


class TestSemFPNR18(ModelTester):
    name = "semfpn_r18"


class TestSemFPNR18SDN(ModelTester):
    name = "semfpn_r18_sdn"


class TestSegmenterViTT16(ModelTester):
    name, size, odd_size = "segmenter_vitt16", 32, (37, 45)


class TestSegmenterViTT16SDN(ModelTester):
    name, size, odd_size = "segmenter_vitt16_sdn", 32, (37, 45)


class TestOCRNetHR18S(ModelTester):
    name = "ocrnet_hr18s"


class TestOCRNetHR18SSDN(ModelTester):
    name = "ocrnet_hr18s_sdn"


class TestMaskFormerEffLite0(ModelTester):
    name = "maskformer_efflite0"


class TestMaskFormerEffLite0SDN(ModelTester):
    name = "maskformer_efflite0_sdn"


@pytest.mark.parametrize(
    "name", [n for n in SEGMENTORS if not n.startswith(CPU_SCALE)], scope="class"
)
class TestPaperScale(ModelTester):
    """About a second per model at 32 px, so not marked slow."""

    size, odd_size = 32, (33, 47)

    @pytest.fixture(scope="class")
    def model(self, name):
        return create_model(name, self.num_classes)


@pytest.mark.parametrize("name", [n for n in SEGMENTORS if not n.endswith("_sdn")])
def test_sdn_twin_differs_only_by_the_neck(name):
    base, twin = get_config(name), get_config(name + "_sdn")
    assert twin.sdn is not None and base.sdn is None
    assert ModelConfig(**{**vars(twin), "name": name, "sdn": None}) == base
    if name.startswith(CPU_SCALE):  # cheap to build
        base_state = create_model(name, 3).state_dict()
        twin_state = create_model(name + "_sdn", 3).state_dict()
        outside = {k: v.shape for k, v in twin_state.items() if not k.startswith("neck.")}
        assert outside == {k: v.shape for k, v in base_state.items()}
        assert len(twin_state) > len(base_state)


def test_neck_kinds():
    assert isinstance(create_model("fcn_r18d8_sdn", 3).neck, SingleScaleSDN)
    assert isinstance(create_model("segmenter_vitt16_sdn", 3).neck, SingleScaleSDN)
    assert isinstance(create_model("semfpn_r18_sdn", 3).neck, MultiScaleSDN)
    assert isinstance(create_model("ocrnet_hr18s_sdn", 3).neck, MultiScaleSDN)
    assert isinstance(create_model("maskformer_efflite0_sdn", 3).neck, MultiScaleSDN)
    concat = create_model("ocrnet_hr18s_sdn", 3, sdn_placement="concat").neck
    assert isinstance(concat, ConcatSDN)
    assert create_model("fcn_r18d8", 3).neck is None


@pytest.mark.parametrize("name", ["fcn_r18d8_sdn", "semfpn_r18_sdn"])
def test_sdn_necks_resize_guidance_at_odd_feature_sizes(name):
    model = create_model(name, 3).eval()
    assert model.size_divisor == max(model.backbone.reductions)  # as its baseline's
    model.size_divisor = 1  # no padding: odd maps, Φ(F_L) and F_{i+1} resized bilinearly
    with torch.no_grad():
        assert model(torch.randn(1, 3, 97, 131)).shape == (1, 3, 97, 131)


def test_ablation_overrides_reach_the_sdn():
    model = create_model(
        "fcn_r18d8_sdn",
        3,
        operator="cdc",
        kernel_size=5,
        dilation=2,
        theta=0.5,
        guidance_channels=8,
        sdc_channels=12,
    )
    sdn = model.neck.sdn
    assert isinstance(sdn, SDN) and isinstance(sdn.op, CentralDifferenceConv2d)
    assert sdn.op.kernel_size == (5, 5) and sdn.op.dilation == (2, 2) and sdn.op.theta == 0.5
    assert sdn.op.in_channels == 12 and model.neck.guidance[0].out_channels == 8
    assert model.config.overrides["operator"] == "cdc"
    sc = create_model("semfpn_r18_sdn", 3, operator="sc", lam=0.5)
    assert all(type(s.op) is SemanticConv2d for s in sc.neck.sdns)
    assert sc.neck.sdns[0].op.lam.item() == pytest.approx(0.5, rel=1e-6)
    assert sc.config.overrides["operator"] == "sc"
    conv = create_model("semfpn_r18_sdn", 3, operator="conv", sdc_channels=None)
    assert all(
        type(s.op) is torch.nn.Conv2d and s.op.in_channels == s.op.out_channels
        for s in conv.neck.sdns
    )


def test_backbone_override_builds_on_its_channels():
    model = create_model("fcn_r18d8", 3, backbone="resnet34")
    assert model.backbone.name == "resnet34"
    assert (
        model.head.convs[0][0].in_channels == 512 and model.aux_head.convs[0][0].in_channels == 256
    )
    model = create_model("semfpn_r18_sdn", 3, backbone="resnet10t", backbone_kwargs={})
    assert model.backbone.reductions == [4, 8, 16, 32]
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_config_round_trip_and_top_level_factory():
    model = sdnseg.create_model("segmenter_vitt16_sdn", 4, dilation=2)
    record = model.config.to_dict()
    assert record["name"] == "segmenter_vitt16_sdn" and record["overrides"] == {"dilation": 2}
    assert ModelConfig.from_dict(record) == model.config
    rebuilt = create_model(record["name"], 4, **record["overrides"])
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert list_models() == list(MODELS) and len(MODELS) == 36 and len(SEGMENTORS) == 34


def test_pretrained_path_loads_backbone_weights(tmp_path):
    source = timm.create_model("vit_tiny_patch16_224")
    torch.save({"state_dict": source.state_dict()}, tmp_path / "vit.pth")
    model = create_model("segmenter_vitt16", 3, pretrained=tmp_path / "vit.pth")
    torch.testing.assert_close(model.backbone.body.model.pos_embed, source.pos_embed)
    torch.testing.assert_close(
        model.backbone.body.model.blocks[3].attn.qkv.weight, source.blocks[3].attn.qkv.weight
    )


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("fcn_r99", {}, "known models: .*fcn_r18d8"),
        ("fcn_r18d8_sdn", {"opertor": "sdc"}, "'opertor'.*allowed"),
        ("fcn_r18d8", {"operator": "conv"}, "fcn_r18d8_sdn"),
        ("fcn_r18d8_sdn", {"operator": "dconv"}, "operator"),
        ("fcn_r18d8", {"out_indices": (1, 2, 3, 6)}, "out_indices"),
        ("fcn_r18d8", {"out_indices": (4,)}, "auxiliary head reads feature -2"),
        ("ocrnet_hr18s", {"sdn_placement": "concat"}, "ocrnet_hr18s_sdn"),
        ("ocrnet_hr18s_sdn", {"sdn_placement": "stem"}, "'multi_scale', 'concat'"),
        ("fcn_r18d8_sdn", {"sdn_placement": "concat"}, "of a 'fcn' decoder.*single_scale"),
        ("maskformer_efflite0_sdn", {"sdn_placement": "concat"}, "'maskformer'.*multi_scale"),
    ],
)
def test_factory_errors(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, 3, **overrides)


def test_missing_pretrained_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        create_model("fcn_r18d8", 3, pretrained=tmp_path / "missing.pth")


@pytest.mark.parametrize("name", ["semfpn_r18_sdn", "fcn_r18d8"])
def test_edge_head_override_adds_aux_edge_in_training_only(name):
    small = {"backbone": "resnet10t", "backbone_kwargs": {}}
    model = create_model(name, 3, edge_head=True, **small)
    assert model.config.edge_head_kwargs == {} and model.edge_head is not None
    images = torch.randn(2, 3, 72, 88)
    outputs = model.train().forward_train(images)
    assert outputs.aux["edge"].shape == (2, 1, 72, 88)
    assert model.eval()(images).shape == (2, 3, 72, 88)
    assert create_model(name, 3, **small).edge_head is None
    wide = create_model(name, 3, edge_head={"channels": 16}, **small)
    assert wide.edge_head.logit.in_channels == 16
    assert ModelConfig.from_dict(wide.config.to_dict()) == wide.config
