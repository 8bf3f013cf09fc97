"""The demo generator's trainer: an interrupted run resumes to the same weights as an uninterrupted one."""

import pytest
import torch

from shapes import train_generator as tg
from shapes import world


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_training_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    # refine and mixing re-centre truncation at their step 3: a resumed run must use the centre saved with the
    # step-2 checkpoint for step 2, not one recomputed from the mapping it resumed with
    monkeypatch.setattr(tg, "MEAN_W_EVERY", 3)
    steps = dict(
        synthesis_steps=4,
        mapping_steps=4,
        joint_steps=4,
        refine_steps=4,
        mixing_steps=4,
        batch_size=4,
        mapping_batch_size=16,
        checkpoint_every=2,
    )
    threads = torch.get_num_threads()
    full = tg.train(tg.GeneratorTrainConfig(**steps, work_dir=str(tmp_path / "a"), out=str(tmp_path / "a.pt")))
    assert torch.get_num_threads() == threads  # the trainer's thread count does not leak into the caller

    calls = {"n": 0}
    real_render = world.render

    def flaky_render(attrs):  # renders 1-4: synthesis, 5-8: joint, 9-12: refine (checkpoint after 10); then
        calls["n"] += 1  # resumed: 13-14 refine, 15-18 mixing (checkpoint after 16)
        if calls["n"] in (12, 17):
            raise _Interrupt
        return real_render(attrs)

    cfg = tg.GeneratorTrainConfig(**steps, work_dir=str(tmp_path / "b"), out=str(tmp_path / "b.pt"))
    monkeypatch.setattr(world, "render", flaky_render)
    with pytest.raises(_Interrupt):
        tg.train(cfg)
    assert not (tmp_path / "b.pt").exists() and calls["n"] == 12
    with pytest.raises(_Interrupt):
        tg.train(cfg)
    assert not (tmp_path / "b.pt").exists() and calls["n"] == 17
    monkeypatch.setattr(world, "render", real_render)
    resumed = tg.train(cfg)
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    from models.stylegan2 import load_generator

    loaded = load_generator(str(tmp_path / "b.pt"))
    assert torch.equal(loaded.mean_w, resumed.mean_w) and torch.equal(loaded.mean_w, full.mean_w)
    assert any(not torch.equal(a[k], tg.StyleGAN2Generator(**tg.ARCHITECTURE, seed=0).state_dict()[k]) for k in a)
