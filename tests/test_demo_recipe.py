"""The shipped generator's recipe: phases chained by init, resumable phase by phase."""

import pytest
import torch

from models.stylegan2 import load_generator
from shapes import demo_recipe
from shapes import train_generator as tg


def test_phases_chain_and_scale(tmp_path):
    configs = demo_recipe.phase_configs(str(tmp_path), scale=0.001)
    assert [c.init for c in configs] == ["", *(str(tmp_path / f"phase{k}.pt") for k in range(4))]
    first = configs[0]
    assert (first.synthesis_steps, first.mapping_steps, first.joint_steps, first.refine_steps) == (6, 20, 0, 0)
    assert [c.mixing_steps for c in configs] == [7, 3, 2, 2, 1]
    full = demo_recipe.phase_configs(str(tmp_path))
    assert [c.mixing_steps for c in full] == [7000, 3000, 2000, 2000, 650] and full[0].synthesis_steps == 6000
    assert full[2].perturb_layers == "3,9" and full[1].mixing_splits == "2,3,5,6"
    assert (full[3].mixing_splits, full[3].perturb_target, full[3].focus_share) == ("2,3,5,6,7", "directed", 0.15)
    # the last phase is the fourth's settings with pushes on the shape layer too, and the distinct-pixel loss
    last = {k: v for k, v in vars(full[4]).items() if k not in ("mixing_steps", "init", "out", "work_dir")}
    shape = dict(perturb_share=0.35, perturb_layers="3,5,9", perturb_sigmas=8.0, pin_channels="5:78")
    shape |= dict(perturb_target="directed-shape", distinct_weight=6.0, distinct_shapes="circle,square,cross")
    assert last == {k: v for k, v in vars(full[3]).items() if k in last} | shape


@pytest.mark.slow
def test_the_recipe_writes_the_last_phase_and_skips_finished_phases(tmp_path, monkeypatch):
    work, out = tmp_path / "work", tmp_path / "g.pt"
    demo_recipe.train_recipe(str(out), str(work), scale=0.001)
    last = load_generator(str(work / "phase4.pt"))
    made = load_generator(str(out))
    assert all(torch.equal(a, b) for a, b in zip(made.state_dict().values(), last.state_dict().values()))
    first = load_generator(str(work / "phase0.pt"))
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), last.state_dict().values()))

    (work / "phase4.pt").unlink()  # as if the recipe had stopped in its last phase
    ran = []
    real = tg.train
    monkeypatch.setattr(tg, "train", lambda cfg: ran.append(cfg.out) or real(cfg))
    demo_recipe.train_recipe(str(out), str(work), scale=0.001)
    assert ran == [str(work / "phase4.pt")]


def test_the_cli_says_one_line_when_a_phase_file_is_unreadable(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "phase0.pt").write_bytes(b"not a generator")  # a finished-looking first phase, cut short by a full disk
    with pytest.raises(SystemExit, match=r"^error: checkpoint .*phase0\.pt is not a readable PyTorch file"):
        demo_recipe.main(["--work-dir", str(work), "--out", str(tmp_path / "g.pt"), "--scale", "0.001"])
    assert not (tmp_path / "g.pt").exists() and not (work / "phase1.pt").exists()
