from PIL import Image

from sdnseg.nn.functional import semantic_diffusion
from sdnseg.viz.diffusion import diffusion_figure, two_region_image


def test_two_region_image_has_an_edge_and_texture():
    image = two_region_image(size=32, noise=0.0)
    assert image.shape == (1, 1, 32, 32)
    left, right = image[..., :16], image[..., 16:]
    assert right.mean() - left.mean() > 0.8
    assert left.std() > 0.05  # the texture, an intra-region false edge


def test_anisotropic_keeps_the_edge_that_isotropic_blurs():
    image = two_region_image(size=48, seed=1)
    iso = semantic_diffusion(image, None, steps=40, beta=0.2, lam=1e6)
    pm = semantic_diffusion(image, None, steps=40, beta=0.2, lam=0.08)
    jump = lambda x: (x[..., 24] - x[..., 23]).mean()  # noqa: E731
    assert jump(pm) > 2 * jump(iso)


def test_diffusion_figure_is_written(tmp_path):
    path = diffusion_figure(tmp_path / "sub" / "diffusion.png", steps=3)
    with Image.open(path) as img:
        assert img.size[0] > img.size[1] > 100
    assert [p.name for p in path.parent.iterdir()] == ["diffusion.png"]  # no temp file left


def test_diffusion_command(tmp_path, capsys):
    from sdnseg.engine.cli import main

    out = tmp_path / "d.png"
    assert main(["diffusion", "--output", str(out), "--steps", "2"]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
