"""Image-text building blocks: tokenizer, image transform, towers, ClipLite, open_clip wrapper,
contrastive loss and retrieval metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mmkit.backbones.clip_lite import ClipLite
from mmkit.backbones.open_clip_model import OpenClipModel, create_open_clip
from mmkit.errors import UserInputError
from mmkit.io.image import load_image_array
from mmkit.losses import ContrastiveLoss
from mmkit.metrics.retrieval import retrieval_metrics, zero_shot_accuracy
from mmkit.preprocess.image import CLIP_MEAN, CLIP_STD, ImageTransform
from mmkit.preprocess.text import CLIP_VOCAB_SIZE, ClipTokenizer
from mmkit.registry import create_backbone, create_preprocessor

SOT, EOT = 49406, 49407
# open_clip's ViT-S-32 shrunk through model_kwargs: the full config (63M parameters) is slow on
# 2 shared cores, and model_kwargs must round-trip anyway.
TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def _uint8_halves(batch: int, height: int, width: int) -> torch.Tensor:
    """Left half red, right half blue."""
    x = torch.zeros(batch, height, width, 3, dtype=torch.uint8)
    x[:, :, : width // 2, 0] = 230
    x[:, :, width // 2 :, 2] = 230
    return x


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)


# --- clip_tokenizer -----------------------------------------------------------------------------


def test_tokenizer_shapes_and_special_tokens() -> None:
    tok = create_preprocessor("clip_tokenizer", context_length=16)
    out = tok(["a red circle on the left", "a blue square"])
    assert out.dtype == torch.long and out.shape == (2, 16)
    assert out[:, 0].tolist() == [SOT, SOT]
    ends = out.argmax(dim=1).tolist()  # EOT is the largest id
    assert out[0, ends[0]] == EOT and out[1, ends[1]] == EOT
    assert ends[0] == 7 and ends[1] == 4  # 6 and 3 word tokens after the start token
    assert (out[1, ends[1] + 1 :] == 0).all()
    assert tok.decode(out) == ["a red circle on the left", "a blue square"]
    assert tok("one caption").shape == (1, 16)
    assert tok([]).shape == (0, 16)
    assert tok.vocab_size == CLIP_VOCAB_SIZE


def test_tokenizer_truncates_keeping_end_token_and_round_trips_params() -> None:
    tok = ClipTokenizer(context_length=5)
    out = tok(["a red circle on the left and a blue square at the top"])
    assert out.shape == (1, 5) and out[0, 0] == SOT and out[0, -1] == EOT
    assert (out != 0).all()
    params = tok.params()
    assert json.loads(json.dumps(params)) == {"context_length": 5, "model_name": ""}
    again = create_preprocessor("clip_tokenizer", **params)
    assert torch.equal(again(["x y z"]), tok(["x y z"]))
    with pytest.raises(UserInputError, match=r"context_length \(2\) must be >= 3"):
        ClipTokenizer(context_length=2)
    with pytest.raises(UserInputError, match="expects strings"):
        tok([1, 2])  # type: ignore[list-item]


# --- image_transform ----------------------------------------------------------------------------


def test_image_transform_eval_is_exact_at_native_size() -> None:
    x = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    t = create_preprocessor("image_transform", size=64).eval()
    out = t(x)
    assert out.shape == (3, 3, 64, 64) and out.dtype == torch.float32
    expected = (
        x.permute(0, 3, 1, 2).float() / 255 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_image_transform_eval_centre_crops_non_square() -> None:
    x = torch.zeros(1, 40, 80, 3, dtype=torch.uint8)
    x[:, :, 20:60] = 200  # the centred 40x40 square is bright, the sides dark
    out = _unnormalise(ImageTransform(size=20).eval()(x))
    torch.testing.assert_close(out, torch.full_like(out, 200 / 255), rtol=0, atol=1e-5)


def test_image_transform_train_is_mild_seeded_and_keeps_sides() -> None:
    x = _uint8_halves(16, 64, 64)
    t = ImageTransform(size=48, seed=3).train()
    a, b = t(x), ImageTransform(size=48, seed=3).train()(x)
    assert a.shape == (16, 3, 48, 48)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # same seed, same crops
    assert not torch.allclose(a, ImageTransform(size=48, seed=4).train()(x))
    assert not torch.allclose(a[0], a[1])  # per-sample crops
    rgb = _unnormalise(a)
    # no flip and no colour change by default: left stays red, right stays blue
    assert (rgb[:, 0, :, :8] > 0.85).all() and (rgb[:, 2, :, :8] < 0.05).all()
    assert (rgb[:, 2, :, -8:] > 0.85).all() and (rgb[:, 0, :, -8:] < 0.05).all()
    gen = torch.Generator().manual_seed(11)
    first = t(x, generator=gen)
    torch.testing.assert_close(first, t(x, generator=torch.Generator().manual_seed(11)))


def test_image_transform_flip_and_jitter_are_opt_in() -> None:
    x = _uint8_halves(4, 32, 32)
    flipped = _unnormalise(
        ImageTransform(size=32, hflip=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0)).train()(x)
    )
    assert (flipped[:, 2, :, :8] > 0.85).all() and (flipped[:, 0, :, -8:] > 0.85).all()
    jitter = ImageTransform(size=32, color_jitter=0.5, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    plain = ImageTransform(size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert not torch.allclose(jitter(x), plain(x))
    torch.testing.assert_close(jitter.eval()(x), plain.eval()(x))  # eval never jitters


def test_image_transform_params_and_validation() -> None:
    t = ImageTransform(size=32, scale=(0.9, 1.0), seed=5)
    params = json.loads(json.dumps(t.params()))
    assert params["size"] == 32 and params["scale"] == [0.9, 1.0] and params["hflip"] == 0.0
    rebuilt = create_preprocessor("image_transform", **params)
    x = torch.randint(0, 256, (2, 40, 40, 3), dtype=torch.uint8)
    torch.testing.assert_close(rebuilt(x), t(x))
    with pytest.raises(UserInputError, match=r"expects uint8 \[B, H, W, 3\]"):
        t(torch.zeros(2, 3, 32, 32))
    with pytest.raises(UserInputError, match="scale must be two numbers"):
        ImageTransform(scale=(0.5, 1.5))
    with pytest.raises(UserInputError, match=r"size \(0\) must be > 0"):
        ImageTransform(size=0)


def test_towers_without_head_are_feature_extractors() -> None:
    vit = create_backbone("image_vit_test")
    resnet = create_backbone("image_resnet", width=8, output_dim=32, head_width=32)
    x = torch.randn(2, 3, 64, 64)
    assert vit(x).shape == (2, vit.num_features) == (2, 64)
    assert resnet(x).shape == (2, 32)
    with pytest.raises(UserInputError, match=r"expects \[B, 3, 64, 64\]"):
        vit(torch.randn(2, 3, 32, 32))
    with pytest.raises(UserInputError, match="multiple of patch_size"):
        create_backbone("image_vit", image_size=60, patch_size=8)


# --- ClipLite -----------------------------------------------------------------------------------


def test_clip_lite_logit_scale_init_and_clamp() -> None:
    model = create_backbone("clip_lite_test")
    assert isinstance(model, ClipLite)
    assert model.scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    scale = model.scale()
    assert scale.item() == pytest.approx(100.0, rel=1e-6)
    scale.backward()
    assert model.logit_scale.grad.item() == 0.0  # capped: no push further up
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == pytest.approx(math.log(100.0), rel=1e-6)
    _, _, forward_scale = model(torch.randn(1, 3, 64, 64), ClipTokenizer()(["x"]))
    assert forward_scale.item() <= 100.0 + 1e-4


def test_clip_lite_config_rebuilds_and_validates() -> None:
    model = create_backbone(
        "clip_lite",
        embed_dim=32,
        image_tower="image_resnet",
        image_kwargs={"width": 8, "output_dim": 32, "head_width": 32},
        text_tower="text_transformer_test",
        text_kwargs={"context_length": 20},
    )
    config = json.loads(json.dumps(model.config))
    rebuilt = create_backbone("clip_lite", **config)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert model.context_length == 20 and model.image_size == 64
    image_pp, text_pp = model.preprocessors()["image"], model.preprocessors()["text"]
    assert image_pp == (
        "image_transform",
        {"size": 64, "mean": list(CLIP_MEAN), "std": list(CLIP_STD)},
    )
    assert text_pp == ("clip_tokenizer", {"context_length": 20})
    with pytest.raises(UserInputError, match="take no num_classes"):
        create_backbone("clip_lite_test", num_classes=5)
    with pytest.raises(UserInputError, match="image tower 'text_transformer' is a text backbone"):
        create_backbone("clip_lite_test", image_tower="text_transformer")
    with pytest.raises(UserInputError, match="Did you mean 'image_vit'"):
        create_backbone("clip_lite_test", image_tower="image_vitt")


def test_clip_lite_pads_short_tokens_and_rejects_long_ones() -> None:
    model = create_backbone("clip_lite_test").eval()
    captions = ["a red circle on the left", "a blue cross"]
    full = ClipTokenizer(context_length=32)(captions)
    short = ClipTokenizer(context_length=12)(captions)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(short), model.encode_text(full))
        with pytest.raises(UserInputError, match=r"token ids \[B, L <= 32\]"):
            model.encode_text(ClipTokenizer(context_length=40)(captions))


def _scene_batch(scene_set, n: int) -> tuple[torch.Tensor, list[str]]:
    records = scene_set.split("train")[:n]
    arrays = np.stack([load_image_array(r.path, 64) for r in records])
    return torch.from_numpy(arrays), [r.captions[0] for r in records]


def test_contrastive_training_reduces_loss_on_a_fixed_batch(scene_set) -> None:
    torch.manual_seed(0)
    pixels, captions = _scene_batch(scene_set, 8)
    model = create_backbone("clip_lite_test")
    images = ImageTransform(size=64).eval()(pixels)
    tokens = ClipTokenizer()(captions)
    loss_fn = ContrastiveLoss()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss = loss_fn(*model(images, tokens))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        model.clamp_logit_scale_()
        losses.append(loss.item())
    assert losses[0] > 1.5  # about chance (log 8 = 2.08) at the start
    assert losses[-1] < 0.3 * losses[0], losses


def test_same_inputs_give_the_same_similarity_twice(scene_set) -> None:
    torch.manual_seed(0)
    pixels, captions = _scene_batch(scene_set, 2)
    model = create_backbone("clip_lite_test").eval()
    images = create_preprocessor("image_transform").eval()(pixels)
    tokens = ClipTokenizer()(captions)
    with torch.no_grad():
        first = model.encode_image(images) @ model.encode_text(tokens).T
        second = model.encode_image(images) @ model.encode_text(tokens).T
    assert torch.equal(first, second)


# --- open_clip wrapper --------------------------------------------------------------------------


def test_open_clip_local_file_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_open_clip("ViT-S-32", model_kwargs=TINY_OPEN_CLIP)
    assert isinstance(source, OpenClipModel)
    weights = tmp_path / "vit_s_32.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(weights))
    torch.manual_seed(2)  # a different random init: equal features prove the file was loaded
    loaded = create_backbone(
        "open_clip_model",
        model_name="ViT-S-32",
        pretrained=str(weights),
        model_kwargs=json.loads(json.dumps(TINY_OPEN_CLIP)),
    )
    assert loaded.image_size == 64 and loaded.context_length == 16 and loaded.embed_dim == 32
    assert loaded.image_mean == tuple(CLIP_MEAN) and loaded.image_std == tuple(CLIP_STD)
    images = torch.randn(2, 3, 64, 64)
    tokens = loaded.tokenizer(["a red circle on the left", "a blue square at the top"])
    params = loaded.preprocessors()["text"][1]
    assert params == {"context_length": 16, "model_name": "ViT-S-32"}
    assert torch.equal(
        create_preprocessor("clip_tokenizer", **params)(
            ["a red circle on the left", "a blue square at the top"]
        ),
        tokens,
    )
    source.eval()
    loaded.eval()
    with torch.no_grad():
        a_img, a_txt, a_scale = source(images, tokens)
        b_img, b_txt, b_scale = loaded(images, tokens)
        again = loaded.encode_image(images) @ loaded.encode_text(tokens).T
    assert torch.equal(a_img, b_img) and torch.equal(a_txt, b_txt)
    assert a_scale.item() == pytest.approx(1 / 0.07, rel=1e-6) and a_scale == b_scale
    assert torch.equal(again, b_img @ b_txt.T)


def test_open_clip_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="unknown open_clip architecture 'ViT-S-33'"):
        create_open_clip("ViT-S-33")
    with pytest.raises(UserInputError, match="not a known tag or valid file path"):
        create_open_clip("ViT-S-32", pretrained=str(tmp_path / "missing.safetensors"))
    with pytest.raises(UserInputError, match="take no num_classes"):
        create_backbone("open_clip_model", num_classes=2, model_name="ViT-S-32")


# --- ContrastiveLoss ----------------------------------------------------------------------------


def test_contrastive_loss_matches_symmetric_infonce() -> None:
    generator = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    txt = F.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    logits = 10.0 * img @ txt.T
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    loss = ContrastiveLoss()(img, txt, torch.tensor(10.0))
    torch.testing.assert_close(loss, expected)
    # two orthonormal pairs: each row's loss is log(1 + e^(-s))
    eye = torch.eye(2)
    torch.testing.assert_close(
        ContrastiveLoss()(eye, eye, 5.0), torch.tensor(math.log1p(math.exp(-5.0)))
    )
    with pytest.raises(ValueError, match="must both be"):
        ContrastiveLoss()(img, txt[:4], 1.0)


def _ddp_loss_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        img, txt = _ddp_features()
        size = img.shape[0] // world
        local_img = img[rank * size : (rank + 1) * size].clone().requires_grad_()
        local_txt = txt[rank * size : (rank + 1) * size].clone().requires_grad_()
        loss = ContrastiveLoss()(F.normalize(local_img), F.normalize(local_txt), 5.0)
        loss.backward()
        torch.save(
            {"loss": loss.detach(), "img": local_img.grad, "txt": local_txt.grad},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def _ddp_features() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 4, generator=generator), torch.randn(8, 4, generator=generator)


@pytest.mark.slow  # spawns two interpreters that import torch + open_clip (~10 s of CPU)
def test_contrastive_loss_under_ddp_equals_the_global_batch_loss(tmp_path: Path) -> None:
    """Two gloo ranks with half the batch each: the mean of their losses is the full-batch loss
    and each rank's feature gradients are world_size x the full-batch ones (DDP then averages)."""
    world = 2
    torch.multiprocessing.spawn(
        _ddp_loss_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    img, txt = (t.requires_grad_() for t in _ddp_features())
    full = ContrastiveLoss()(F.normalize(img), F.normalize(txt), 5.0)
    full.backward()
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), full.detach())
    torch.testing.assert_close(torch.cat([r["img"] for r in ranks]), world * img.grad)
    torch.testing.assert_close(torch.cat([r["txt"] for r in ranks]), world * txt.grad)


# --- retrieval metrics --------------------------------------------------------------------------


def test_retrieval_metrics_one_caption_per_image() -> None:
    images = torch.eye(3)
    # caption 0 -> image 0 (perfect); caption 1 -> image 1 but closer to image 2;
    # caption 2 -> image 2 but closest to image 0, then image 2 (rank 2)
    texts = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.8, 0.0, 0.6]])
    result = retrieval_metrics(images, texts, torch.tensor([0, 1, 2]))
    assert result["num_pairs"] == 3
    # text->image ranks: 1, 2, 2
    assert result["text_to_image"] == {
        "R@1": 1 / 3,
        "R@5": 1.0,
        "R@10": 1.0,
        "mean_rank": 5 / 3,
        "median_rank": 2.0,
    }
    # image->text: image 0 scores (1, 0, .8) -> caption 0 first: rank 1;
    # image 1 scores (0, .6, 0) -> rank 1; image 2 scores (0, .8, .6) -> caption 2 second: rank 2
    assert result["image_to_text"] == {
        "R@1": 2 / 3,
        "R@5": 1.0,
        "R@10": 1.0,
        "mean_rank": 4 / 3,
        "median_rank": 1.0,
    }


def test_retrieval_metrics_several_captions_per_image() -> None:
    angles = torch.tensor([0.0, 1.0, 2.0, 3.0])  # image directions on a circle
    images = torch.stack([angles.cos(), angles.sin()], dim=1)

    def at(a: float) -> list[float]:
        return [math.cos(a), math.sin(a)]

    # image 0: captions at 1.9 (nearest image 2) and 0.1 (nearest image 0)
    # image 1: one caption at 2.9; image 2: captions at 2.05 and 2.6; image 3: one caption at 0.05
    texts = torch.tensor([at(1.9), at(0.1), at(2.9), at(2.05), at(2.6), at(0.05)])
    text_to_image = torch.tensor([0, 0, 1, 2, 2, 3])
    result = retrieval_metrics(images, texts, text_to_image, ks=(1, 2, 5))
    # text->image, images ordered by angular distance from the caption:
    # c0 (1.9): 2, 1, 3, 0 -> rank 4; c1 (0.1): 0 first -> 1; c2 (2.9): 3, 2, 1 -> 3;
    # c3 (2.05): 2 first -> 1; c4 (2.6): 3 (0.4) before 2 (0.6) -> 2; c5 (0.05): 0, 1, 2, 3 -> 4
    ranks_t = [4, 1, 3, 1, 2, 4]
    assert result["text_to_image"] == {
        "R@1": 2 / 6,
        "R@2": 3 / 6,
        "R@5": 1.0,
        "mean_rank": sum(ranks_t) / 6,
        "median_rank": 2.5,
    }
    # image->text, rank of the best own caption among all six:
    # image 0: c5 (0.05) beats its best own c1 (0.1) -> 2;
    # image 1: own c2 is 1.9 away, c0 c1 c3 c4 c5 are closer -> 6;
    # image 2: own c3 is 0.05 away, nothing closer -> 1;
    # image 3: own c5 is 2.95 away, all five others are closer -> 6
    ranks_i = [2, 6, 1, 6]
    assert result["image_to_text"] == {
        "R@1": 1 / 4,
        "R@2": 2 / 4,
        "R@5": 2 / 4,
        "mean_rank": sum(ranks_i) / 4,
        "median_rank": 4.0,
    }


def test_retrieval_chunks_agree_with_a_naive_argsort(monkeypatch: pytest.MonkeyPatch) -> None:
    import mmkit.metrics.retrieval as retrieval

    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(23, 5, generator=generator), dim=-1)
    text_to_image = torch.cat([torch.arange(23), torch.randint(0, 23, (17,), generator=generator)])
    texts = F.normalize(
        images[text_to_image] + 0.8 * torch.randn(40, 5, generator=generator), dim=-1
    )
    sims = images @ texts.T
    order_t = sims.T.argsort(dim=1, descending=True)  # images per caption
    ranks_t = (order_t == text_to_image[:, None]).float().argmax(dim=1) + 1
    order_i = sims.argsort(dim=1, descending=True)  # captions per image
    own = text_to_image[order_i] == torch.arange(23)[:, None]
    ranks_i = own.float().argmax(dim=1) + 1
    expected = retrieval_metrics(images, texts, text_to_image)
    monkeypatch.setattr(retrieval, "_CHUNK", 4)
    result = retrieval_metrics(images, texts, text_to_image)
    assert result == expected
    assert result["text_to_image"]["mean_rank"] == pytest.approx(ranks_t.float().mean().item())
    assert result["image_to_text"]["mean_rank"] == pytest.approx(ranks_i.float().mean().item())
    assert result["text_to_image"]["R@5"] == pytest.approx((ranks_t <= 5).float().mean().item())
    assert result["image_to_text"]["R@1"] == pytest.approx((ranks_i <= 1).float().mean().item())


def test_retrieval_ties_count_against_the_query_and_inputs_are_checked() -> None:
    same = torch.ones(4, 3)
    result = retrieval_metrics(same, same, torch.tensor([0, 1, 2, 3]))
    assert result["image_to_text"]["R@1"] == 0.0 and result["image_to_text"]["mean_rank"] == 4.0
    assert result["text_to_image"]["R@1"] == 0.0
    with pytest.raises(UserInputError, match="image 1 has no caption"):
        retrieval_metrics(torch.eye(3), torch.eye(3)[:2], torch.tensor([0, 2]))
    with pytest.raises(UserInputError, match="one entry per caption"):
        retrieval_metrics(torch.eye(3), torch.eye(3), torch.tensor([0, 1]))
    with pytest.raises(UserInputError, match=r"image indices in \[0, 3\)"):
        retrieval_metrics(torch.eye(3), torch.eye(3), torch.tensor([0, 1, 3]))


def brute_force_ranks(
    images: torch.Tensor, texts: torch.Tensor, text_to_image: list[int]
) -> tuple[list[int], list[int]]:
    """Ranks by sorting, one query at a time: candidates by falling cosine similarity, a wrong
    candidate before a right one on equal similarity (ties pessimistic), rank = 1 + the position
    of the first right one. Image -> text: right = any of the image's own captions."""
    sims = (F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T).tolist()
    ranks_t = []
    for t, image in enumerate(text_to_image):
        order = sorted(range(len(images)), key=lambda j: (-sims[j][t], j == image))
        ranks_t.append(order.index(image) + 1)
    ranks_i = []
    for i in range(len(images)):
        order = sorted(range(len(texts)), key=lambda t: (-sims[i][t], text_to_image[t] == i))
        ranks_i.append(next(p for p, t in enumerate(order) if text_to_image[t] == i) + 1)
    return ranks_t, ranks_i


def summary(ranks: list[int], ks: tuple[int, ...]) -> dict[str, float]:
    out = {f"R@{k}": sum(r <= k for r in ranks) / len(ranks) for k in ks}
    out["mean_rank"] = sum(ranks) / len(ranks)
    out["median_rank"] = float(np.median(ranks))
    return out


def test_retrieval_duplicate_captions_hand_computed() -> None:
    e = torch.eye(3)
    images = e.clone()
    # c0 and c1 are the same text for different images (0 and 1);
    # c2 and c3 are the same text, both for image 1
    texts = torch.stack([e[0], e[0], e[1], e[1], e[2]])
    text_to_image = [0, 1, 1, 1, 2]
    result = retrieval_metrics(images, texts, torch.tensor(text_to_image), ks=(1, 2, 5))
    # text->image: c1's image 1 scores 0, behind image 0 (1) and tied with image 2 (0) -> 3
    ranks_t = [1, 3, 1, 1, 1]
    # image->text: image 0's own c0 ties with c1 (another image's caption) -> 2;
    # image 1's own duplicates c2, c3 do not push each other down -> 1
    ranks_i = [2, 1, 1]
    assert brute_force_ranks(images, texts, text_to_image) == (ranks_t, ranks_i)
    assert result["text_to_image"] == summary(ranks_t, (1, 2, 5))
    assert result["image_to_text"] == summary(ranks_i, (1, 2, 5))
    assert result["text_to_image"]["R@1"] == 4 / 5 and result["image_to_text"]["R@1"] == 2 / 3
    # two images with identical features and identical captions: every query ties -> rank 2
    twin = retrieval_metrics(e[:1].repeat(2, 1), e[:1].repeat(2, 1), torch.tensor([0, 1]))
    assert twin["text_to_image"]["mean_rank"] == 2.0 and twin["image_to_text"]["R@1"] == 0.0


# Feature pool whose cosine similarities are exact in float32 whatever the summation order
# (entries of the unit vectors are 0, +-1/2 or +-1): equal features give bit-equal similarities,
# so ties are real ties, and duplicates of images and captions are frequent.
_SIGNS = torch.tensor([[(s >> b & 1) * 2 - 1.0 for b in range(4)] for s in range(16)])
_POOL = torch.cat([_SIGNS, torch.eye(4), -torch.eye(4)])


@pytest.mark.parametrize("seed", range(40))
def test_retrieval_with_ties_and_duplicates_matches_brute_force(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmkit.metrics.retrieval as retrieval

    g = torch.Generator().manual_seed(seed)
    num_images = int(torch.randint(1, 16, (), generator=g))
    extra = int(torch.randint(0, 2 * num_images + 1, (), generator=g))
    text_to_image = torch.cat(
        [torch.arange(num_images), torch.randint(0, num_images, (extra,), generator=g)]
    )
    text_to_image = text_to_image[torch.randperm(len(text_to_image), generator=g)]
    pool = _POOL[
        torch.randperm(len(_POOL), generator=g)[: int(torch.randint(2, 8, (), generator=g))]
    ]
    images = pool[torch.randint(0, len(pool), (num_images,), generator=g)]
    texts = pool[torch.randint(0, len(pool), (len(text_to_image),), generator=g)]
    ranks_t, ranks_i = brute_force_ranks(images, texts, text_to_image.tolist())
    unit_images, unit_texts = F.normalize(images, dim=-1), F.normalize(texts, dim=-1)
    ks = (1, 2, 5)
    for chunk in (1024, 3):
        monkeypatch.setattr(retrieval, "_CHUNK", chunk)
        got_t = retrieval.text_to_image_ranks(unit_images, unit_texts, text_to_image)
        got_i = retrieval.image_to_text_ranks(unit_images, unit_texts, text_to_image)
        assert (got_t.tolist(), got_i.tolist()) == (ranks_t, ranks_i)
        result = retrieval_metrics(images, texts, text_to_image, ks=ks)
        assert result["num_pairs"] == len(text_to_image)
        assert result["text_to_image"] == pytest.approx(summary(ranks_t, ks))
        assert result["image_to_text"] == pytest.approx(summary(ranks_i, ks))


def test_zero_shot_accuracy() -> None:
    classes = torch.eye(3)
    images = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 1.0], [0.0, 1.0, 0.1], [0.5, 0.6, 0.0]])
    labels = torch.tensor([0, 2, 2, 0])
    # predictions 0, 2, 1, 1 -> two of four right; with k=2: image 2's class 2 is second, image
    # 3's class 0 is second -> all four
    assert zero_shot_accuracy(images, classes, labels) == 0.5
    assert zero_shot_accuracy(images, classes, labels, k=2) == 1.0
    with pytest.raises(UserInputError, match=r"class indices in \[0, 3\)"):
        zero_shot_accuracy(images, classes, torch.tensor([0, 1, 2, 3]))
