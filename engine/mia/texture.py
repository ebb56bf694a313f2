"""The texture branch of MIA (paper eq. 4): z_i = P_i F_i(e) + z_bar_i.

Each avatar decoder D_i was trained on its own, so latent spaces are not aligned across subjects;
a small person-specific adaptation layer F_i maps the shared expression embedding e into subject
i's space. P_i (a fixed PCA basis of the subject's codes) drops the latent dimensions the subject
never uses, so F_i only has `pca_dim` outputs to learn.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from engine.mia.config import ModelConfig


class AdaptationLayer(nn.Sequential):
    """F_i = ReLU then a fully connected layer without bias (the mean z_bar_i is the bias)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(nn.ReLU(), nn.Linear(in_dim, out_dim, bias=False))

    @property
    def linear(self) -> nn.Linear:
        layer = self[1]
        assert isinstance(layer, nn.Linear)
        return layer


class IdentityCodeSpace(nn.Module):
    """The fixed PCA of one subject's avatar codes: basis P (latent_dim, pca_dim), mean z_bar.

    Both are buffers: they are saved with the model but never trained.
    """

    def __init__(self, basis: Tensor, mean: Tensor) -> None:
        super().__init__()
        if basis.dim() != 2 or mean.shape != (basis.shape[0],):
            raise ValueError(
                f"IdentityCodeSpace needs basis (latent_dim, pca_dim) and mean (latent_dim,), got "
                f"{tuple(basis.shape)} and {tuple(mean.shape)}"
            )
        self.register_buffer("basis", basis.detach().float().clone())
        self.register_buffer("mean", mean.detach().float().clone())

    @classmethod
    def empty(cls, latent_dim: int, pca_dim: int) -> IdentityCodeSpace:
        """A placeholder of the right shapes, to be filled by `load_state_dict`."""
        return cls(torch.zeros(latent_dim, pca_dim), torch.zeros(latent_dim))

    @classmethod
    def fit(cls, codes: Tensor, pca_dim: int) -> IdentityCodeSpace:
        """PCA of (T, latent_dim) codes; the basis is the top `pca_dim` principal directions.

        Uses the eigen-decomposition of the latent_dim x latent_dim covariance, so T can be a whole
        capture and the basis is complete (orthonormal) even when T < pca_dim. Signs are fixed
        (largest entry of each direction positive) so refitting the same codes gives the same P.
        """
        if codes.dim() != 2 or codes.shape[0] < 2:
            raise ValueError(
                "IdentityCodeSpace.fit needs codes shaped (T >= 2, latent_dim), "
                f"got {tuple(codes.shape)}"
            )
        if not 0 < pca_dim <= codes.shape[1]:
            raise ValueError(f"pca_dim must be in 1..{codes.shape[1]}, got {pca_dim}")
        x = codes.detach().double()
        mean = x.mean(dim=0)
        centred = x - mean
        covariance = centred.T @ centred / (x.shape[0] - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        basis = eigenvectors[:, eigenvalues.argsort(descending=True)[:pca_dim]]
        largest = basis.gather(0, basis.abs().argmax(dim=0, keepdim=True))
        basis = basis * largest.sign()
        return cls(basis, mean)

    @property
    def latent_dim(self) -> int:
        return self.basis.shape[0]

    @property
    def pca_dim(self) -> int:
        return self.basis.shape[1]

    def project(self, y: Tensor) -> Tensor:
        """PCA coefficients y (N, pca_dim) -> avatar code z = y P^T + z_bar (eq. 4)."""
        return y @ self.basis.T + self.mean

    def encode(self, z: Tensor) -> Tensor:
        """Codes z (N, latent_dim) -> PCA coefficients; the inverse of `project` on P's span."""
        return (z - self.mean) @ self.basis


def check_identity_name(name: str) -> None:
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(
            f"identity name {name!r} is not usable: expected a non-empty string without '.'"
        )


class TextureBranch(nn.Module):
    """All subjects' F_i and P_i, z_bar_i; routes each sample to its own subject (the selector)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.adapters = nn.ModuleDict()
        self.code_spaces = nn.ModuleDict()

    @property
    def identities(self) -> list[str]:
        return list(self.adapters.keys())

    def add_identity(
        self, name: str, codes: Tensor | None = None, device: torch.device | str | None = None
    ) -> AdaptationLayer:
        """Add subject `name`: a fresh F_i and the PCA of its avatar `codes` (T, latent_dim).

        Without codes the code space is an empty placeholder, for restoring a checkpoint.
        """
        check_identity_name(name)
        if name in self.adapters:
            raise ValueError(f"identity {name!r} is already in the texture branch")
        if codes is not None and (codes.dim() != 2 or codes.shape[1] != self.cfg.latent_dim):
            raise ValueError(
                f"codes for identity {name!r} must be shaped (T, {self.cfg.latent_dim}), got "
                f"{tuple(codes.shape)}"
            )
        space = (
            IdentityCodeSpace.empty(self.cfg.latent_dim, self.cfg.pca_dim)
            if codes is None
            else IdentityCodeSpace.fit(codes, self.cfg.pca_dim)
        )
        if device is None:
            device = codes.device if codes is not None else "cpu"
        adapter = AdaptationLayer(self.cfg.embedding_dim, self.cfg.pca_dim).to(device)
        self.adapters[name] = adapter
        self.code_spaces[name] = space.to(device)
        return adapter

    def forward(self, e: Tensor, identity_names: list[str]) -> Tensor:
        """e (N, 2*embed_dim), one subject name per sample -> avatar codes z (N, latent_dim)."""
        if len(identity_names) != e.shape[0]:
            raise ValueError(
                f"TextureBranch: {e.shape[0]} embeddings but {len(identity_names)} identity names"
            )
        unknown = sorted(set(identity_names) - set(self.adapters.keys()))
        if unknown:
            raise KeyError(
                f"identities {unknown} have no adaptation layer; known: {self.identities}"
            )
        z = e.new_empty(e.shape[0], self.cfg.latent_dim)
        for name in dict.fromkeys(identity_names):
            rows = torch.tensor(
                [i for i, n in enumerate(identity_names) if n == name], device=e.device
            )
            space = self.code_spaces[name]
            assert isinstance(space, IdentityCodeSpace)
            z[rows] = space.project(self.adapters[name](e[rows]))
        return z
