import torch
import torch.nn.functional as F

from wmdd_hf import load_backbone
from wmdd_hf.mosaic import mosaic, nearest_rows


def _class_teacher():
    """Scores class 1 by brightness: bright crops win."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([-torch.ones(256), torch.ones(256)]) / 256 * 20)
        net[1].bias.zero_()
    return load_backbone(net, in_chans=1, img_size=16, mean=(0.5,), std=(0.5,))


def test_mosaic_tiles_the_crops_the_teacher_likes_best():
    teacher = _class_teacher()
    images = torch.stack([torch.full((1, 16, 16), v) for v in (0.1, 0.9, 0.2, 0.8, 0.3)])  # flat images
    out = mosaic(teacher, images, class_id=1, grid=2, crops_per_image=1, crop_scale=(1.0, 1.0))
    # flat images: each tile is one image's (whole) crop, the four brightest for class 1, best first, row by row
    tiles = [out[:, r * 8 : (r + 1) * 8, q * 8 : (q + 1) * 8] for r in range(2) for q in range(2)]
    assert [round(float(t.mean()), 3) for t in tiles] == [0.9, 0.8, 0.3, 0.2]
    assert out.shape == (1, 16, 16) and out.min() >= 0 and out.max() <= 1
    dark = mosaic(teacher, images, class_id=0, grid=1, crops_per_image=1, crop_scale=(1.0, 1.0))
    torch.testing.assert_close(dark, F.interpolate(images[:1], size=(16, 16))[0])  # class 0 wants the darkest


def test_nearest_rows_orders_by_distance():
    feats = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    rows = torch.tensor([40, 41, 42, 43])
    assert nearest_rows(feats, rows, [2.9, 0.0], 2) == [41, 42]
