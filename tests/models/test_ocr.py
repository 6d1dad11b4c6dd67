"""OCRNet: the OCR head's operators against plain loops, its mmseg layout, and the zoo entries'
auxiliary logits, loss weighting, SDN gradients, slide inference and weights loading."""

import math

import pytest
import timm
import torch
from torch import nn

from sdnseg.models import Segmentor, create_model, segmentation_loss
from sdnseg.models.heads import FCNHead, ObjectContext, OCRHead, spatial_gather
from sdnseg.nn import ConcatSDN, MultiScaleSDN

SDN_ENTRIES = ("ocrnet_hr18s_sdn", "ocrnet_efflite2_sdn")


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _gather_loop(pixels: torch.Tensor, logits: torch.Tensor, scale: float) -> torch.Tensor:
    """f_k = Σ_i softmax_i(scale · m_ki) x_i, one batch item, class and channel at a time."""
    n, c, h, w = pixels.shape
    out = pixels.new_zeros(n, c, logits.shape[1])
    for b in range(n):
        for k in range(logits.shape[1]):
            m = [scale * logits[b, k, y, x] for y in range(h) for x in range(w)]
            z = sum(math.exp(v) for v in m)
            for ch in range(c):
                values = [pixels[b, ch, y, x] for y in range(h) for x in range(w)]
                out[b, ch, k] = sum(math.exp(v) / z * x for v, x in zip(m, values, strict=True))
    return out


def test_spatial_gather_matches_a_loop():
    pixels, logits = torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.randn(2, 4, 4, 5)
    logits = logits.double()
    torch.testing.assert_close(
        spatial_gather(pixels, logits, 0.7), _gather_loop(pixels, logits, 0.7)
    )
    # and the einsum form: regions = pixels · softmax over pixels
    weights = logits.flatten(2).softmax(2)
    expected = torch.einsum("nci,nki->nck", pixels.flatten(2), weights)
    torch.testing.assert_close(spatial_gather(pixels, logits), expected)


def test_spatial_gather_gradcheck_and_errors():
    pixels = torch.randn(1, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, m: spatial_gather(p, m, 1.5), (pixels, logits))
    with pytest.raises(ValueError, match="spatial size"):
        spatial_gather(torch.randn(1, 3, 4, 4), torch.randn(1, 2, 4, 5))


def _object_context_loop(block: ObjectContext, pixels: torch.Tensor, regions: torch.Tensor):
    """y_i = ρ(Σ_k w_ik δ(f_k)), w_ik = softmax_k(φ(x_i)·ψ(f_k)/√c), z_i = g([y_i, x_i]), by pixel."""
    n, _, h, w = pixels.shape
    query = block.query(pixels)  # (N, c, H, W)
    key = block.key(regions.unsqueeze(-1))[..., 0]  # (N, c, K)
    value = block.value(regions.unsqueeze(-1))[..., 0]
    scale = 1 / math.sqrt(query.shape[1])
    context = pixels.new_zeros(n, value.shape[1], h, w)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                scores = torch.stack(
                    [query[b, :, y, x] @ key[b, :, k] * scale for k in range(key.shape[2])]
                )
                weights = scores.softmax(0)
                context[b, :, y, x] = sum(weights[k] * value[b, :, k] for k in range(len(weights)))
    return block.fuse(torch.cat([block.out(context), pixels], dim=1))


def test_object_context_matches_a_per_pixel_loop():
    block = ObjectContext(6, 4).double().eval()
    for module in block.modules():  # non-trivial BN statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    pixels, regions = torch.randn(2, 6, 3, 4).double(), torch.randn(2, 6, 5).double()
    torch.testing.assert_close(block(pixels, regions), _object_context_loop(block, pixels, regions))


def test_object_context_gradcheck():
    block = ObjectContext(3, 2).double().eval()
    pixels = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    regions = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (pixels, regions))


def test_ocr_head_matches_mmseg_hr48_layout():
    head = OCRHead([48, 96, 192, 384], 19)
    assert head.in_channels == 720 and isinstance(head.soft_regions, FCNHead)
    regions = [m for m in head.soft_regions.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in regions] == [
        (720, 720, (1, 1)),
        (720, 19, (1, 1)),
    ]
    assert head.pixels[0].kernel_size == (3, 3) and head.pixels[0].out_channels == 512
    block = head.object_context
    assert [m[0].in_channels for m in (*block.query, *block.key)] == [512, 256, 512, 256]
    assert block.value[0].out_channels == 256 and block.out[0].out_channels == 512
    assert block.fuse[0].in_channels == 1024 and block.temperature == 256**-0.5
    # no dropout in mmseg's OCRNet configs (dropout_ratio=-1)
    assert isinstance(head.classifier[0], nn.Identity)
    assert isinstance(head.soft_regions.classifier[0], nn.Identity)
    conv_bn = (720 * 720 + 2 * 720) + (9 * 720 * 512 + 2 * 512)
    attention = 2 * (512 * 256 + 256 * 256 + 4 * 256) + (512 * 256 + 2 * 256)
    attention += 256 * 512 + 2 * 512 + 1024 * 512 + 2 * 512
    classifiers = 2 * 19 + 720 * 19 + 512 * 19
    assert _params(head) == conv_bn + attention + classifiers


def test_ocr_head_shapes_and_errors():
    head = OCRHead([4, 8], 3, channels=8, ocr_channels=4, region_channels=6).eval()
    features = [torch.randn(2, 4, 9, 11), torch.randn(2, 8, 5, 6)]
    logits, regions = head(features)
    assert logits.shape == regions.shape == (2, 3, 9, 11)
    # a neck that concatenated the features already: a one-feature list of the summed width
    assert head([torch.randn(2, 12, 9, 11)])[0].shape == (2, 3, 9, 11)
    with pytest.raises(ValueError, match="12 channels in all"):
        head([torch.randn(2, 4, 9, 11)])
    with pytest.raises(ValueError, match="scale"):
        OCRHead([4], 3, scale=0)


def test_ocr_segmentor_gives_main_and_aux_logits_at_the_input_size():
    backbone = create_model("ocrnet_hr18s", 3).backbone
    head = OCRHead(backbone.channels, 3, channels=16, ocr_channels=8, region_channels=16)
    model = Segmentor(backbone, head)
    assert model.has_aux and model.aux_head is None
    images = torch.randn(2, 3, 64, 96)
    outputs = model.train().forward_train(images)
    assert outputs.logits.shape == outputs.aux["aux"].shape == (2, 3, 64, 96)
    assert model.eval()(images).shape == (2, 3, 64, 96)


def _cross_entropy_by_hand(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log softmax at the target, averaged over all pixels (nothing ignored)."""
    log_probs = logits - logits.exp().sum(1, keepdim=True).log()
    return -log_probs.gather(1, target[:, None]).mean()


def test_aux_loss_weight_is_applied_to_the_soft_regions():
    model = create_model("ocrnet_hr18s", 4).train()
    target = torch.randint(0, 4, (2, 64, 64))
    outputs = model.forward_train(torch.randn(2, 3, 64, 64))
    main = _cross_entropy_by_hand(outputs.logits, target)
    aux = _cross_entropy_by_hand(outputs.aux["aux"], target)
    assert not torch.allclose(main, aux)
    torch.testing.assert_close(segmentation_loss(outputs, target), main + 0.4 * aux)
    torch.testing.assert_close(segmentation_loss(outputs, target, aux_weight=1.0), main + aux)


@pytest.mark.parametrize("name", SDN_ENTRIES)
def test_gradient_reaches_the_sdn_parameters(name):
    model = create_model(name, 3).train()
    assert isinstance(model.neck, MultiScaleSDN)
    # 128 px: at 64 the stride-32 branch is 2×2 and Φ's map 1×1, a constant guidance whose
    # differences (and so Φ's gradient) are exactly zero.
    target = torch.randint(0, 3, (2, 128, 128))
    segmentation_loss(model.forward_train(torch.randn(2, 3, 128, 128)), target).backward()
    for param_name, param in model.neck.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name


def test_concat_placement_is_one_argument():
    model = create_model("ocrnet_hr18s_sdn", 3, sdn_placement="concat")
    assert isinstance(model.neck, ConcatSDN) and model.config.sdn_placement == "concat"
    assert model.neck.sdn.sdn.fuse[0].out_channels == sum(model.backbone.channels)
    outputs = model.train().forward_train(torch.randn(2, 3, 96, 96))
    assert outputs.logits.shape == outputs.aux["aux"].shape == (2, 3, 96, 96)
    segmentation_loss(outputs, torch.randint(0, 3, (2, 96, 96))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.neck.parameters())
    baseline = create_model("ocrnet_hr18s", 3).state_dict()
    outside = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("neck.")}
    assert outside == {k: v.shape for k, v in baseline.items()}


def test_slide_inference_averages_tiles_of_whole_forwards():
    model = create_model("ocrnet_hr18s", 3).eval()
    images = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        tiles = torch.cat([model(images[..., :64]), model(images[..., 64:])], dim=-1)
        slide = model.inference(images, mode="slide", crop_size=64, stride=64, output="logits")
        torch.testing.assert_close(slide, tiles)
        overlapping = model.inference(images, mode="slide", crop_size=64, stride=32)
    assert overlapping.shape == (1, 3, 64, 128)
    torch.testing.assert_close(overlapping.sum(1), torch.ones(1, 64, 128))


def test_pretrained_file_loads_into_the_hrnet_backbone(tmp_path):
    """The loader of a user-supplied file (as for the ResNet entries); no HRNet weights exist
    here, so a timm classifier's state dict, wrapped as mmseg saves one, stands in."""
    torch.manual_seed(1)
    source = timm.create_model("hrnet_w18_small_v2")
    state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "hrnet.pth")
    model = create_model("ocrnet_hr18s", 3, pretrained=tmp_path / "hrnet.pth")
    body = model.backbone.body
    for key in ("conv1.weight", "layer1.0.conv1.weight", "stage4.1.branches.3.1.conv2.weight"):
        torch.testing.assert_close(body.state_dict()[key], source.state_dict()[key])
    torch.testing.assert_close(body.bn2.running_var, source.bn2.running_var)


def test_ocrnet_hr48_construction_and_parameter_count():
    """Construction only (HRNet-W48 is 65M parameters); TestPaperScale runs it at 32 px."""
    model = create_model("ocrnet_hr48_sdn", 19)
    assert model.backbone.channels == [48, 96, 192, 384]
    assert model.backbone.reductions == [4, 8, 16, 32]
    backbone = timm.create_model("hrnet_w48", features_only=True, feature_location="")
    assert _params(model.backbone) == _params(backbone) == 65_325_120
    assert _params(model.head) == _params(OCRHead([48, 96, 192, 384], 19))
    # the paper's full-width SDN on every branch: SDC as wide as the branch, Φ 384 wide
    neck = model.neck
    assert isinstance(neck, MultiScaleSDN) and neck.guidance[0].out_channels == 384
    assert [s.op.in_channels for s in neck.sdns] == [48, 96, 192, 384]
    assert [s.fuse[0].in_channels for s in neck.sdns] == [96, 192, 384, 768]
    assert (
        _params(model) - _params(neck) == 65_325_120 + 5_046_326
    )  # test_ocr_head_matches_mmseg_hr48_layout
