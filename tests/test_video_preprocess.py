"""mmkit.preprocess.video: frame samplers (values and pinned messages) and the clip transform."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mmkit import create_preprocessor
from mmkit.errors import UserInputError
from mmkit.preprocess.video import (
    KINETICS_MEAN,
    KINETICS_STD,
    VideoTransform,
    multi_clip_indices,
    random_clip_indices,
    uniform_indices,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_uniform_indices() -> None:
    assert uniform_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert uniform_indices(7, 7).tolist() == list(range(7))
    assert uniform_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # short clip: repeat
    assert uniform_indices(100, 1).tolist() == [50]
    assert uniform_indices(10, 5).dtype == torch.long


def test_random_clip_indices() -> None:
    starts = set()
    for seed in range(200):
        idx = random_clip_indices(30, 8, 2, generator=_gen(seed))
        assert idx.dtype == torch.long and len(idx) == 8
        assert (idx.diff() == 2).all() and idx.min() >= 0 and idx.max() <= 29
        starts.add(int(idx[0]))
    assert starts == set(range(16))  # every valid start (0..15) is reachable
    same = random_clip_indices(30, 8, 2, generator=_gen(3))
    assert torch.equal(same, random_clip_indices(30, 8, 2, generator=_gen(3)))
    assert random_clip_indices(8, 8, generator=_gen(0)).tolist() == list(range(8))


def test_clip_longer_than_video_follows_policy() -> None:
    assert random_clip_indices(5, 4, 2, generator=_gen(0)).tolist() == [0, 2, 4, 4]
    assert random_clip_indices(5, 4, 2, generator=_gen(0), policy="wrap").tolist() == [0, 2, 4, 1]
    with pytest.raises(UserInputError) as err:
        random_clip_indices(5, 4, 2, generator=_gen(0), policy="error")
    assert str(err.value) == (
        "clip span (7 frames) exceeds the video (5 frames); use policy='repeat_last' or 'wrap'"
    )


def test_multi_clip_indices() -> None:
    grid = multi_clip_indices(100, 3, 8, 2)
    assert grid.shape == (3, 8) and grid.dtype == torch.long
    # span 15, valid starts 0..85: centres of 3 equal segments of 86 starts
    assert grid[:, 0].tolist() == [14, 43, 71]
    assert (grid.diff(dim=1) == 2).all()
    assert multi_clip_indices(4, 2, 3).tolist() == [[0, 1, 2], [1, 2, 3]]
    assert multi_clip_indices(2, 2, 3).tolist() == [[0, 1, 1], [0, 1, 1]]
    assert multi_clip_indices(2, 1, 3, policy="wrap").tolist() == [[0, 1, 0]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: multi_clip_indices(10, 0, 4), "num_clips (0) must be > 0"),
        (lambda: multi_clip_indices(10, 2, 0), "clip_len (0) must be > 0"),
        (lambda: multi_clip_indices(0, 2, 4), "num_frames_in_clip (0) must be > 0"),
        (lambda: random_clip_indices(10, 4, 0), "frame_interval (0) must be > 0"),
        (lambda: random_clip_indices(10, -3), "clip_len (-3) must be > 0"),
        (lambda: uniform_indices(10, 0), "num_frames (0) must be > 0"),
        (lambda: uniform_indices(0, 4), "num_frames_in_clip (0) must be > 0"),
        (
            lambda: random_clip_indices(10, 4, policy="loop"),
            "policy ('loop') must be one of repeat_last, wrap, error",
        ),
        (lambda: create_preprocessor("multi_clip", num_clips=0), "num_clips (0) must be > 0"),
        (lambda: VideoTransform(size=64, short_side=32), "short_side (32) must be >= size (64)"),
        (lambda: VideoTransform(size=0), "size (0) must be > 0"),
    ],
)
def test_pinned_error_messages(call, message: str) -> None:
    with pytest.raises(UserInputError) as err:
        call()
    assert str(err.value) == message


def test_registered_samplers() -> None:
    uniform = create_preprocessor("uniform", num_frames=4)
    assert uniform(8, _gen(0)).tolist() == [1, 3, 5, 7]
    assert uniform.params() == {"num_frames": 4}
    rnd = create_preprocessor("random_clip", clip_len=4, frame_interval=3)
    assert torch.equal(rnd(50, _gen(1)), random_clip_indices(50, 4, 3, generator=_gen(1)))
    multi = create_preprocessor("multi_clip", num_clips=2, clip_len=4)
    assert multi(20, None).shape == (2, 4)
    for sampler in (uniform, rnd, multi):
        rebuilt = type(sampler)(**json.loads(json.dumps(sampler.params())))
        assert rebuilt.params() == sampler.params()


def _clips(b: int = 3, t: int = 4, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, t, h, w, 3), generator=_gen(seed), dtype=torch.uint8)


def test_transform_shapes_and_eval_centre_crop() -> None:
    tf = VideoTransform(size=32, short_side=36).eval()
    x = _clips()
    out = tf(x)
    assert out.shape == (3, 3, 4, 32, 32) and out.dtype == torch.float32
    # Reference: resize short side 48 -> 36 (64 -> 48), centre crop 32, normalise.
    ref = x.permute(0, 1, 4, 2, 3).float().div(255).flatten(0, 1)
    ref = F.interpolate(ref, size=(36, 48), mode="bilinear", antialias=True, align_corners=False)
    ref = ref[:, :, 2:34, 8:40].unflatten(0, (3, 4)).permute(0, 2, 1, 3, 4)
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(out, (ref - mean) / std)
    assert torch.equal(tf(x), out)  # eval is deterministic


def test_transform_default_short_side_and_normalisation() -> None:
    tf = VideoTransform(size=112, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    assert tf.short_side == 128  # MMAction2's 128 -> 112
    x = torch.full((1, 2, 128, 160, 3), 255, dtype=torch.uint8)
    out = tf(x)
    assert out.shape == (1, 3, 2, 112, 112)
    torch.testing.assert_close(out, torch.full_like(out, 2.0))
    floats = VideoTransform(size=16, short_side=16).eval()(torch.full((1, 1, 16, 16, 3), 0.5))
    expected = (0.5 - torch.tensor(KINETICS_MEAN)) / torch.tensor(KINETICS_STD)
    torch.testing.assert_close(floats[0, :, 0, 0, 0], expected)


def test_transform_train_random_crop_is_seeded() -> None:
    x = _clips(b=6, h=40, w=40)
    a = VideoTransform(size=24, short_side=40).train()
    b = VideoTransform(size=24, short_side=40).train()
    torch.manual_seed(1)
    first = a(x)
    torch.manual_seed(1)
    assert torch.equal(first, b(x))  # same global seed, same crops
    assert not torch.equal(first, a(x))  # the RNG moves on
    assert torch.equal(a(x, generator=_gen(5)), b(x, generator=_gen(5)))
    crops = a(x, generator=_gen(7))
    eval_out = a.eval()(x)
    assert not torch.equal(crops, eval_out)
    # every train crop is some 24x24 window of the (unresized) frames
    full = VideoTransform(size=40, short_side=40).eval()(x)
    for i in range(6):
        hits = [
            torch.equal(crops[i], full[i, :, :, r : r + 24, c : c + 24])
            for r in range(17)
            for c in range(17)
        ]
        assert sum(hits) == 1


def test_flip_is_off_by_default_and_optional() -> None:
    x = _clips(b=8, h=32, w=32)
    plain = VideoTransform(size=32, short_side=32).train()
    assert plain.params()["hflip"] is False
    assert torch.equal(plain(x), plain.eval()(x))  # no crop room, no flip: nothing random
    flipping = VideoTransform(size=32, short_side=32, hflip=True).train()
    torch.manual_seed(0)
    out, ref = flipping(x), plain.eval()(x)
    flipped = [torch.equal(out[i], ref[i].flip(-1)) for i in range(8)]
    kept = [torch.equal(out[i], ref[i]) for i in range(8)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < 8
    assert torch.equal(flipping.eval()(x), ref)  # never flips in eval


def test_transform_params_roundtrip_and_registry() -> None:
    tf = create_preprocessor("video_transform", size=24, hflip=True)
    params = json.loads(json.dumps(tf.params()))
    assert params == {
        "size": 24,
        "short_side": 27,
        "hflip": True,
        "crop_scale": None,
        "color_jitter": 0.0,
        "mean": list(KINETICS_MEAN),
        "std": list(KINETICS_STD),
    }
    again = VideoTransform(**params)
    x = _clips(b=2, h=30, w=30)
    torch.manual_seed(3)
    first = tf.train()(x)
    torch.manual_seed(3)
    assert torch.equal(first, again.train()(x))


def _moving_bar(b: int = 4, t: int = 6, size: int = 48) -> torch.Tensor:
    """uint8 clips of a white vertical bar (3 px) stepping 2 px right per frame, columns 20-32."""
    x = torch.zeros(b, t, size, size, 3, dtype=torch.uint8)
    for f in range(t):
        x[:, f, :, 20 + 2 * f : 23 + 2 * f] = 255
    return x


def _bar_column(out: torch.Tensor) -> torch.Tensor:
    """The brightness-weighted mean column of each frame: ``[B, T]``."""
    v = out.mean(dim=(1, 3))  # [B, T, W]
    v = v - v.amin(dim=-1, keepdim=True)
    cols = torch.arange(v.shape[-1], dtype=v.dtype)
    return (v * cols).sum(-1) / v.sum(-1)


def test_crop_scale_resized_crop_in_train_only_and_seeded() -> None:
    x = _moving_bar(b=8)
    plain = VideoTransform(size=32, short_side=48).eval()
    # 60-90% of the area: every box is >= 32 px wide, so it holds the bar in every frame
    tf = VideoTransform(size=32, short_side=48, crop_scale=(0.6, 0.9))
    assert tf.params()["crop_scale"] == [0.6, 0.9]
    assert torch.equal(tf.eval()(x), plain(x))  # eval: the centre crop, untouched
    tf.train()
    a, b = tf(x, generator=_gen(4)), tf(x, generator=_gen(4))
    assert a.shape == (8, 3, 6, 32, 32) and torch.equal(a, b)  # seeded
    assert not torch.equal(a, tf(x, generator=_gen(5)))
    torch.testing.assert_close(_bar_column(plain(x)).diff(dim=1), torch.full((8, 5), 2.0))
    # a plain crop keeps the 2 px step; a resized box of 32-48 px scales it by 32 / width, a
    # different factor per clip, and never reverses the motion
    steps = _bar_column(a).diff(dim=1)
    assert (steps > 0).all()
    speed = steps.mean(dim=1)
    assert (speed < 2.05).all() and (speed > 1.3).all() and speed.std() > 0.05


def test_crop_scale_with_flip_reverses_motion_in_some_clips() -> None:
    x = _moving_bar(b=16)
    tf = VideoTransform(size=32, short_side=48, crop_scale=(0.6, 0.9), hflip=True).train()
    steps = _bar_column(tf(x, generator=_gen(0))).diff(dim=1).mean(dim=1)
    assert 0 < int((steps < 0).sum()) < 16


def test_color_jitter_in_train_only_and_seeded() -> None:
    x = _clips(b=4, h=32, w=32)
    plain = VideoTransform(size=32, short_side=32).eval()
    tf = VideoTransform(size=32, short_side=32, color_jitter=0.4)
    assert torch.equal(tf.eval()(x), plain(x))
    tf.train()
    a = tf(x, generator=_gen(1))
    assert torch.equal(a, tf(x, generator=_gen(1)))
    ref = plain(x)
    assert not torch.equal(a, ref)
    # each clip's mean brightness moves by its own factor, so the shifts differ between clips
    shift = (a - ref).mean(dim=(1, 2, 3, 4))
    assert shift.abs().min() > 1e-3 and shift.std() > 1e-3
    # a black clip stays black whatever the factors (brightness and saturation scale 0)
    black = torch.zeros(2, 3, 32, 32, 3, dtype=torch.uint8)
    torch.testing.assert_close(tf(black, generator=_gen(2)), plain(black))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_scale": (0.0, 0.5)}, r"crop_scale \(\[0.0, 0.5\]\) must be \[min, max\]"),
        ({"crop_scale": (0.8, 0.5)}, r"crop_scale \(\[0.8, 0.5\]\) must be \[min, max\]"),
        ({"color_jitter": 1.0}, r"color_jitter \(1.0\) must be in \[0, 1\)"),
    ],
)
def test_augment_options_reject_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        VideoTransform(size=16, **kwargs)


def test_transform_rejects_bad_shapes() -> None:
    with pytest.raises(UserInputError, match=r"expected uint8 clips \[B, T, H, W, 3\]"):
        VideoTransform(size=8)(torch.zeros(2, 8, 8, 3, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_transform_on_cuda_matches_cpu() -> None:
    x = _clips(b=4, h=40, w=56)
    cpu = VideoTransform(size=32, hflip=True).train()
    gpu = VideoTransform(size=32, hflip=True).train().cuda()
    torch.manual_seed(2)
    out = gpu(x.cuda())
    torch.manual_seed(2)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), cpu(x), atol=1e-4, rtol=1e-4)
