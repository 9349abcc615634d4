"""Reading pictures of every kind into model input: files, modes, sizes, errors, datasets, labels."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.transforms.functional import center_crop, pil_to_tensor, resize

from zfcourse import worlds
from zfcourse.data import synthetic
from zfcourse.data import ImageFolderDataset, ImageReadError, image_files, labels, load_images, read_image
from zfcourse.topk import top_activations


def stand_in(size=32):
    """A World-like object: shorter side to ``size``, centre crop, pixels kept in [0, 1]."""
    def preprocess(image):
        assert image.mode == "RGB"
        return center_crop(resize(pil_to_tensor(image), size, antialias=True), size).float() / 255
    return SimpleNamespace(preprocess=preprocess, image_size=size, normalize=lambda x: x)


def save(image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def colour(x):
    """The mean colour of one loaded image, in 0..255."""
    return (x.mean(dim=(1, 2)) * 255).tolist()


def test_folders_are_sorted_skip_hidden_files_and_recurse_only_when_asked(tmp_path):
    for name in ["b.png", "a.JPG", "sub/c.png", ".hidden.png", "._a.jpg", ".git/d.png", "notes.txt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        save(Image.new("RGB", (4, 4)), tmp_path / name, format="PNG") if name != "notes.txt" else (tmp_path / name).write_text("x")
    assert [p.name for p in image_files(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(str(tmp_path), recursive=True)] == \
        ["a.JPG", "b.png", "sub/c.png"]
    # explicit files keep their order and are read whatever their suffix; folders expand in place
    mixed = image_files([tmp_path / "sub/c.png", tmp_path / "notes.txt", tmp_path / "sub"])
    assert [p.name for p in mixed] == ["c.png", "notes.txt", "c.png"]
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        image_files([tmp_path / "b.png", tmp_path / "nope.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no picture files.*recursive=False"):
        image_files(tmp_path / "empty")


def test_every_kind_of_picture_becomes_rgb_with_the_right_values(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (255, 0, 0, 255)                                # top: opaque red
    rgba[4:] = (0, 0, 255, 0)                                  # bottom: transparent blue
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    keyed = Image.new("P", (8, 8), 1)
    keyed.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    kinds = {
        "grey.png": (Image.new("L", (8, 8), 77), "PNG", [77] * 3),
        "bits.png": (Image.new("1", (8, 8), 1), "PNG", [255] * 3),
        "deep.png": (Image.fromarray(np.full((8, 8), 128 * 257, np.uint16)), "PNG", [128] * 3),
        "palette.png": (palette, "PNG", [0, 200, 0]),
        "keyed.png": (keyed, "PNG", [128] * 3),                 # index 1 is the transparent one
        "rgba.png": (Image.fromarray(rgba), "PNG", [(255 + 128) / 2, 64, 64]),
        "la.png": (Image.new("LA", (8, 8), (250, 0)), "PNG", [128] * 3),
        "cmyk.jpg": (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", [255, 0, 0]),
        "tiny.png": (Image.new("RGB", (1, 1), (10, 20, 30)), "PNG", [10, 20, 30]),
        "strip.jpg": (Image.new("RGB", (400, 3), (90, 90, 200)), "JPEG", [90, 90, 200]),
    }
    kwargs = {"keyed.png": {"transparency": 1}}
    paths = [save(img, tmp_path / name, format=fmt, **kwargs.get(name, {})) for name, (img, fmt, _) in kinds.items()]
    assert Image.open(tmp_path / "deep.png").mode == "I;16"    # Pillow would clip it to white in convert()
    batch, kept = load_images(paths, world=stand_in(16), return_paths=True, progress=False)
    assert batch.shape == (len(kinds), 3, 16, 16) and batch.dtype == torch.float32
    assert kept == paths and 0 <= batch.min() and batch.max() <= 1
    for x, (name, (_, fmt, expected)) in zip(batch, kinds.items()):
        assert colour(x) == pytest.approx(expected, abs=4 if fmt == "JPEG" else 0.6), name
    # a single file works too, and a different background shows through the transparency
    assert colour(load_images(tmp_path / "la.png", world=stand_in(16), background=(0, 0, 0), progress=False)[0]) == [0, 0, 0]


def test_exif_orientation_makes_photos_upright(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)                               # left half red, right half blue
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6                                           # "rotate 90 degrees clockwise to view"
    path = save(Image.fromarray(pixels), tmp_path / "phone.jpg", format="JPEG", exif=exif, quality=95)
    upright = read_image(path)
    assert upright.size == (20, 40)                            # now portrait
    assert upright.getpixel((10, 5))[0] > 200 and upright.getpixel((10, 35))[2] > 200   # red on top
    x = load_images(path, world=stand_in(20), progress=False)[0]     # the whole 20 x 20 centre
    assert x[0, :8].mean() > 0.9 and x[2, 12:].mean() > 0.9


def test_large_pictures_are_reduced_early_and_look_the_same(tmp_path):
    yy, xx = np.mgrid[0:3000, 0:4000].astype(np.float32)
    smooth = np.stack([xx / 4000, yy / 3000, 0.5 + 0.4 * np.sin(xx / 300) * np.cos(yy / 250)], axis=-1)
    photo = Image.fromarray((255 * smooth).astype(np.uint8))
    jpeg = save(photo, tmp_path / "big.jpg", format="JPEG", quality=90)
    png = save(photo.resize((1200, 900)), tmp_path / "big.png", format="PNG", compress_level=1)
    # JPEG: decoded at 1/8 scale (500 x 375), then box-reduced by 2; PNG: box-reduced by 7 (sizes round up)
    assert read_image(jpeg, min_size=128).size == (250, 188)
    assert read_image(png, min_size=128).size == (172, 129)
    assert read_image(jpeg, min_size=448).size == (1000, 750)  # 1/4 keeps the shorter side >= 448
    # The imagenet world's preprocessing (torchvision's own, no download): same result
    # as on the full-size picture, up to resampling.
    from torchvision.models import AlexNet_Weights
    tf = AlexNet_Weights.IMAGENET1K_V1.transforms()
    imagenet = SimpleNamespace(preprocess=tf, image_size=224, normalize=None)
    loaded = load_images([jpeg, png], world=imagenet, progress=False)
    assert loaded.shape == (2, 3, 224, 224)
    with Image.open(jpeg) as full:
        reference = tf(full.convert("RGB"))
    assert (loaded[0] - reference).abs().mean() < 0.02         # normalised units: 1 is about 60 grey levels


def bad_files(folder):
    good = save(Image.new("RGB", (10, 10), (0, 255, 0)), folder / "good.png", format="PNG")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    whole = save(photo, folder / "whole.jpg", format="JPEG")
    (folder / "truncated.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return good, whole


def test_unreadable_files_raise_naming_them_or_are_skipped_with_a_warning(tmp_path):
    good, whole = bad_files(tmp_path)
    world = stand_in(8)
    for name in ["empty.jpg", "notes.jpg", "noise.png", "truncated.jpg"]:
        with pytest.raises(ImageReadError, match=name):
            load_images([good, tmp_path / name], world=world, progress=False)
    with pytest.warns(UserWarning) as caught:
        batch, paths = load_images(tmp_path, world=world, skip_bad=True, return_paths=True, progress=False)
    assert sorted(str(w.message).split("'")[1].rsplit("/", 1)[1] for w in caught) == \
        ["empty.jpg", "noise.png", "notes.jpg", "truncated.jpg"]
    assert paths == [good, whole] and batch.shape == (2, 3, 8, 8)
    assert colour(batch[0]) == pytest.approx([0, 255, 0], abs=0.6)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of the files"):
        load_images([tmp_path / "empty.jpg", tmp_path / "truncated.jpg"], world=world, skip_bad=True, progress=False)


def test_the_dataset_checks_headers_up_front_and_data_when_read(tmp_path):
    good, whole = bad_files(tmp_path)
    with pytest.raises(ImageReadError, match="empty.jpg"):      # the first bad file, in sorted order
        ImageFolderDataset(tmp_path, world=stand_in(8))
    # without skip_bad only headers are checked: a truncated JPEG raises when it is read
    dataset = ImageFolderDataset([good, tmp_path / "truncated.jpg", whole], world=stand_in(8))
    image, index = dataset[2]
    assert image.shape == (3, 8, 8) and index == 2 and repr(dataset) == "ImageFolderDataset(3 pictures, 8x8)"
    with pytest.raises(ImageReadError, match="truncated.jpg.*truncated"):
        dataset[1]


def test_skip_bad_leaves_out_truncated_files_so_that_a_search_reads_every_item(tmp_path):
    good, whole = bad_files(tmp_path)
    with pytest.warns(UserWarning) as caught:
        dataset = ImageFolderDataset(tmp_path, world=stand_in(8), skip_bad=True)
    assert sorted(str(w.message).split("'")[1].rsplit("/", 1)[1] for w in caught) == \
        ["empty.jpg", "noise.png", "notes.jpg", "truncated.jpg"]
    assert [p.name for p in dataset.paths] == ["good.png", "whole.jpg"]
    assert all(dataset[i][0].shape == (3, 8, 8) for i in range(len(dataset)))


def test_size_other_than_the_worlds_keeps_normalisation_not_geometry(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255                                       # left half white
    path = save(Image.fromarray(pixels), tmp_path / "wide.png", format="PNG")
    world = SimpleNamespace(preprocess=None, image_size=64, normalize=lambda x: 2 * x - 1)
    x = load_images(path, size=20, world=world, progress=False)
    assert x.shape == (1, 3, 20, 20)
    # the shorter side is 20 already; the centre 20 columns are 10 white and 10 black, in [-1, 1]
    assert torch.equal(x[0, :, :, :10], torch.ones(3, 20, 10)) and torch.equal(x[0, :, :, 10:], -torch.ones(3, 20, 10))
    assert load_images(path, size=7, world=world, progress=False).shape == (1, 3, 7, 7)
    # size equal to the world's is the world's own preprocessing
    same = load_images(path, size=16, world=stand_in(16), progress=False)
    assert torch.equal(same, load_images(path, world=stand_in(16), progress=False))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="size must be"):
            load_images(path, size=bad, world=world, progress=False)


def test_the_world_is_checked(tmp_path):
    path = save(Image.new("RGB", (5, 5), (255, 255, 255)), tmp_path / "white.png", format="PNG")
    with pytest.raises(TypeError, match="world must be a World"):
        load_images(path, world="synthetic", progress=False)
    with pytest.raises(TypeError, match="world must be a World"):
        ImageFolderDataset(path, "synthetic")


def test_default_world_is_zfcourse_world(tmp_path, monkeypatch):
    path = save(Image.new("RGB", (5, 5), (255, 255, 255)), tmp_path / "white.png", format="PNG")
    monkeypatch.setattr(worlds, "world", lambda: stand_in(6))
    assert torch.equal(load_images(path, progress=False), torch.ones(1, 3, 6, 6))


def test_saved_synthetic_images_load_back_exactly_as_the_worlds_own(tiny_synthetic, tmp_path):
    world = worlds.world("synthetic")
    paths = [save(Image.fromarray(world.val.images[i].permute(1, 2, 0).numpy()), tmp_path / f"{i:02d}.png",
                  format="PNG") for i in range(6)]
    loaded = load_images(tmp_path, world=world, progress=False)
    assert torch.equal(loaded, torch.stack([world.val[i][0] for i in range(6)]))
    # The same pictures at 4x the size, as JPEG: the same content, up to compression and resampling
    big = [save(Image.open(p).resize((256, 256), Image.BICUBIC), p.with_suffix(".jpg"), format="JPEG", quality=95)
           for p in paths]
    assert (load_images(big, world=world, progress=False) - loaded).abs().mean() < 0.15   # model units: [-2, 2]
    # searching a folder of pictures is one line, and indices are the dataset's (sorted files)
    dataset = ImageFolderDataset(tmp_path, world=world)
    assert [p.name for p in dataset.paths] == [f"{i:02d}.{ext}" for i in range(6) for ext in ("jpg", "png")]
    top = top_activations(world.model, dataset, "conv2", k=3, progress=False)
    batch = torch.stack([dataset[i][0] for i in range(12)])
    expected = top_activations(world.model, batch, "conv2", k=3, progress=False)
    assert torch.equal(top.indices, expected.indices) and torch.equal(top.positions, expected.positions)


def test_labels_without_loading_pictures():
    class Counting(Dataset):
        def __init__(self):
            self.reads = 0

        def __len__(self):
            return 6

        def __getitem__(self, i):
            self.reads += 1
            return torch.zeros(3), 5 - i

    class Samples(Counting):                                   # torchvision Imagenette's layout
        _samples = [("a.jpeg", 0), ("b.jpeg", 0), ("c.jpeg", 1), ("d.jpeg", 2), ("e.jpeg", 2), ("f.jpeg", 2)]
        target_transform = staticmethod([10, 20, 30].__getitem__)

    images = synthetic.SyntheticImages("val", 8, seed=3)
    assert torch.equal(labels(images), torch.as_tensor(images.labels).long())
    assert torch.equal(labels(Subset(images, [7, 2, 5]), [2, 0]), torch.as_tensor(images.labels[[5, 7]]).long())
    plain, samples = Counting(), Samples()
    assert labels(plain, [1, 4]).tolist() == [4, 1] and plain.reads == 2     # item by item, only those asked
    assert labels(Subset(samples, [5, 0, 2])).tolist() == [30, 10, 20] and samples.reads == 0
    assert labels(Subset(SimpleNamespace(targets=[3, 1, 4]), [2, 1]), [0]).tolist() == [4]
