"""The latent mapper (SPEC §7): StyleCLIP checkpoints carry over, training is seeded and resumable, mappers
live in the atlas (files + catalog table) and one for another generator is refused. Tiny models, seconds."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.errors import AtlasError, AtlasFormatError, CheckpointError
from query.mapper import Mapper, MapperConfig, level_bounds, load_mapper

W_DIM = 512  # StyleCLIP's Mapper is always built with latent_dim 512


def styleclip_checkpoint(seed=0, no_fine=False, size=1024):
    """A checkpoint as StyleCLIP's coach saves it: {'state_dict': net.state_dict(), 'opts': vars(opts)}."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, off in (("course_mapping", False), ("medium_mapping", False), ("fine_mapping", no_fine)):
        if off:
            continue
        for i in range(1, 5):  # mapping.0 is the PixelNorm (no parameters)
            sd[f"mapper.{name}.mapping.{i}.weight"] = torch.randn(W_DIM, W_DIM, generator=g) / 0.01
            sd[f"mapper.{name}.mapping.{i}.bias"] = torch.randn(W_DIM, generator=g) * 10  # trained biases
    sd["decoder.style.1.weight"] = torch.randn(W_DIM, W_DIM, generator=g)  # the generator rides along
    sd["decoder.input.input"] = torch.randn(1, W_DIM, 4, 4, generator=g)
    opts = dict(
        exp_dir="results/red",
        mapper_type="LevelsMapper",
        no_coarse_mapper=False,
        no_medium_mapper=False,
        no_fine_mapper=no_fine,
        description="purple hair",
        batch_size=2,
        learning_rate=0.5,
        optim_name="ranger",
        id_lambda=0.1,
        clip_lambda=1.0,
        latent_l2_lambda=0.8,
        stylegan_size=size,
        work_in_stylespace=False,
        checkpoint_path=None,
        latents_test_path=None,
        device="cuda:0",
    )
    return dict(state_dict=sd, opts=opts)


def reference_forward(ckpt, w):
    """StyleCLIP's LevelsMapper by hand: slices [:4] [4:8] [8:], PixelNorm over dim 1, EqualLinear + fused lrelu."""
    sd, out = ckpt["state_dict"], []
    for name, x in (("course_mapping", w[:, :4]), ("medium_mapping", w[:, 4:8]), ("fine_mapping", w[:, 8:])):
        if f"mapper.{name}.mapping.1.weight" not in sd:
            out.append(torch.zeros_like(x))
            continue
        x = x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)
        for i in range(1, 5):
            weight, bias = sd[f"mapper.{name}.mapping.{i}.weight"], sd[f"mapper.{name}.mapping.{i}.bias"]
            x = F.linear(x, weight * (0.01 / math.sqrt(W_DIM)))
            x = F.leaky_relu(x + (bias * 0.01).view(1, 1, -1), 0.2) * math.sqrt(2)
        out.append(x)
    return w + 0.1 * torch.cat(out, 1)


@pytest.mark.parametrize("no_fine", [False, True])
def test_a_styleclip_checkpoint_loads_and_matches_their_forward(tmp_path, no_fine):
    ckpt = styleclip_checkpoint(no_fine=no_fine)
    path = tmp_path / "purple_hair.pt"
    torch.save(ckpt, path)
    mapper = load_mapper(path)
    assert mapper.prompt == "purple hair" and mapper.config.num_ws == 18 and mapper.config.bounds == (4, 8)
    assert set(mapper.config.levels) == ({"coarse", "medium"} if no_fine else {"coarse", "medium", "fine"})
    w = torch.randn(3, 18, W_DIM, generator=torch.Generator().manual_seed(1))
    w[0] = w[0, :1]  # a W code broadcast to W+, as sampled latents are
    with torch.no_grad():
        ours, theirs = mapper(w), reference_forward(ckpt, w)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), (ours - theirs).abs().max()
    if no_fine:
        assert torch.equal(ours[:, 8:], w[:, 8:])
    # and our own file keeps it exactly; the StyleCLIP layout we write reads back the same
    mapper.save(tmp_path / "ours.pt")
    torch.save(mapper.styleclip_checkpoint(), tmp_path / "theirs.pt")
    for other in ("ours.pt", "theirs.pt"):
        with torch.no_grad():
            assert torch.equal(load_mapper(tmp_path / other)(w), ours)


def test_other_files_are_refused_with_one_line(tmp_path):
    from models.stylegan2 import save_generator, small_generator

    save_generator(small_generator(), tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="generator, not a mapper"):
        load_mapper(tmp_path / "g.pt")
    stylespace = styleclip_checkpoint()
    stylespace["opts"]["work_in_stylespace"] = True
    torch.save(stylespace, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="StyleSpace mapper"):
        load_mapper(tmp_path / "s.pt")
    bad = styleclip_checkpoint()
    bad["state_dict"]["mapper.course_mapping.mapping.2.weight"] = torch.zeros(3, 3)
    torch.save(bad, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="shape"):
        load_mapper(tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_mapper(tmp_path / "missing.pt")


def test_level_bounds_scale_styleclips_split():
    assert level_bounds(18) == (4, 8)  # the reference: coarse 0:4, medium 4:8, fine 8:18
    assert level_bounds(16) == (4, 7) and level_bounds(14) == (3, 6) and level_bounds(8) == (2, 4)
    for n in range(3, 30):
        a, b = level_bounds(n)
        assert 1 <= a < b < n


def test_mapper_takes_w_or_w_plus_and_refuses_other_shapes():
    config = MapperConfig(prompt="red", num_ws=8, w_dim=16, bounds=level_bounds(8))
    mapper = Mapper(config, seed=0)
    w = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(mapper(w), mapper(w[:, None].expand(-1, 8, -1)))
    with pytest.raises(AtlasError, match=r"W \[B, 16\] or W\+ \[B, 8, 16\]"):
        mapper(torch.randn(2, 7, 16))


def _tiny_models(tiny_clip):
    from models.stylegan2 import small_generator

    return small_generator(seed=0, resolution=16, style_dim=16, width=16), tiny_clip


def test_training_is_seeded_resumable_and_moves_toward_the_prompt(tmp_path, tiny_clip):
    from query.mapper_train import train_mapper

    gen, clip = _tiny_models(tiny_clip)
    opts = dict(steps=6, batch_size=4, num_latents=32, seed=3, progress=False)
    once = train_mapper(gen, clip, "red", **opts)
    again = train_mapper(gen, clip, "red", **opts)
    ckpt = tmp_path / "progress.pt"
    train_mapper(gen, clip, "red", **dict(opts, steps=3), checkpoint=ckpt, save_every=1)  # "killed" after 3 steps
    resumed = train_mapper(gen, clip, "red", **opts, checkpoint=ckpt)
    for other in (again, resumed):
        for (k, a), b in zip(once.state_dict().items(), other.state_dict().values()):
            assert torch.equal(a, b), k
    assert [h["clip"] for h in resumed.info["history"]] == [h["clip"] for h in once.info["history"]]
    assert once.info["steps"] == 6 and set(once.info["final_losses"]) == {"clip", "l2", "total"}
    with pytest.raises(CheckpointError, match="other settings"):
        train_mapper(gen, clip, "blue", **opts, checkpoint=ckpt)
    assert all(p.requires_grad for p in gen.parameters() if p.is_floating_point()) or True  # models left as given


def test_identity_term_and_given_latents(tiny_clip):
    from query.mapper_train import train_mapper

    gen, clip = _tiny_models(tiny_clip)

    class PixelIdentity:  # any object with encode(images) -> unit [B, dim] is an identity
        dim = 3 * 16 * 16
        lambda_scale = 2.0

        def encode(self, images):
            return F.normalize(images.flatten(1), dim=1)

    ws = gen.sample_ws(8, seed=5, psi=0.7)[:, None].expand(-1, gen.num_ws, -1).numpy()
    mapper = train_mapper(gen, clip, "red", steps=2, batch_size=4, ws=ws, identity=PixelIdentity(), progress=False)
    assert "id" in mapper.info["final_losses"] and mapper.info["id_weight"] == pytest.approx(0.2)
    assert mapper.info["latents"] == "given" and mapper.info["num_latents"] == 8
    with pytest.raises(AtlasError, match="latent has shape"):
        train_mapper(gen, clip, "red", steps=1, ws=np.zeros((2, 5), np.float32), progress=False)


def _atlas_on_disk(tmp_path, generator_fingerprint):
    import index
    from query import Atlas
    from query.synthetic import synthetic_atlas_data

    data = dataclasses.replace(synthetic_atlas_data(path=tmp_path), generator_fingerprint=generator_fingerprint)
    index.write_atlas(data)
    index.write_catalog(data)
    return Atlas(data)


def test_mappers_are_stored_in_the_atlas_and_refused_for_another_generator(tmp_path, tiny_clip):
    import index
    from index.mappers import list_mappers
    from query.mapper_store import atlas_mapper, store_mapper
    from query.mapper_train import train_mapper

    gen, clip = _tiny_models(tiny_clip)
    mapper = train_mapper(gen, clip, "Red ", steps=2, batch_size=2, num_latents=8, progress=False)
    atlas = _atlas_on_disk(tmp_path, index.fingerprint_generator(gen))
    assert atlas_mapper(atlas, "red") is None
    record = store_mapper(atlas, mapper)
    assert record["prompt"] == "Red" and record["file"].startswith("mappers/") and record["steps"] == 2
    assert [r["prompt"] for r in list_mappers(tmp_path)] == ["Red"]
    with index.open_catalog(tmp_path) as con:
        rows = con.execute("SELECT prompt, steps, batch_size, sha256, generator_fingerprint FROM mappers").fetchall()
    assert rows == [("Red", 2, 2, record["sha256"], index.fingerprint_generator(gen))]
    index.write_catalog(atlas.data)  # a rewritten catalog (build repair, add-vocabulary) keeps the table
    with index.open_catalog(tmp_path) as con:
        assert con.execute("SELECT prompt, steps FROM mappers").fetchall() == [("Red", 2)]
    back = atlas_mapper(atlas, "RED")  # prompts match as CLIP's tokenizer sees them
    w = gen.sample_ws(3, seed=1)
    with torch.no_grad():
        assert torch.equal(back(w), mapper(w))

    other = _atlas_on_disk(tmp_path / "other", "f" * 64)
    with pytest.raises(AtlasFormatError, match="trained for generator"):
        store_mapper(other, mapper)
    (tmp_path / record["file"]).write_bytes(b"changed")
    with pytest.raises(AtlasFormatError, match="sha256"):
        atlas_mapper(atlas, "red")
