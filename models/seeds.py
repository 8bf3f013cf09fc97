"""One image per seed, everywhere: z for seed s is randn(z_dim) from a torch.Generator seeded with s.

NVIDIA's gen_images.py rule (there with numpy's RandomState): seed 3 is the same image whether it is asked for
alone, as the fourth of `sample_ws(4, seed=0)`, on the command line (`--seed 3`) or on the web page. z is drawn
on the CPU, so a seed means the same latent on every device. (torch is imported inside: the query CLI reads
DEFAULT_PSI without loading it.)
"""

from __future__ import annotations

from models.device import check_seed

DEFAULT_PSI = 0.7  # truncation of sampled latents in the references (SPEC §1)


def seed_z(seeds, z_dim: int):
    """z [len(seeds), z_dim] on the CPU: row i from a torch.Generator seeded with seeds[i]."""
    import torch

    rows = [torch.randn(1, int(z_dim), generator=torch.Generator().manual_seed(check_seed(s))) for s in seeds]
    return torch.cat(rows) if rows else torch.zeros(0, int(z_dim))


def seed_ws(generator, seeds, psi: float = DEFAULT_PSI):
    """w [len(seeds), w_dim] of any generator (the CONTRACT protocol), truncated toward mean_w with psi."""
    import torch

    from models.latents import truncate

    mean_w = torch.as_tensor(generator.mean_w)
    with torch.no_grad():
        w = generator.mapping(seed_z(seeds, generator.z_dim).to(mean_w.device))  # [B, w_dim]
    return truncate(w, mean_w, psi)
