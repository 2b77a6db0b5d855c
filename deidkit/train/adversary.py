"""The online adaptive attacker of the live model's ``defend`` recipe and FaDeNet's ``subspace_defend``:
`deidkit attack`'s adapted head (a linear map from a recogniser's embedding of the output to the original's),
refitted in closed form at every step to the last ``bank`` (output, original) pairs, this batch included. A fresh
fit cannot be dodged by moving the embedding where one slowly trained head is not looking; the de-identifier pays
for the cosine the head reads back above ``margin``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deidkit.eval.attack import fit_adapted_head


class OnlineAdversary:
    """Not checkpointed: a resumed run refills the bank."""

    def __init__(self, bank: int = 1024, ridge: float = 0.1, margin: float = 0.0) -> None:
        self.bank, self.ridge, self.margin = bank, ridge, margin
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, out_embedding: torch.Tensor, original_embedding: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the mean cosine above the margin, differentiable in ``out_embedding``; the per-image cosine read back)."""
        e_out, e_orig = F.normalize(out_embedding, dim=1), F.normalize(original_embedding.detach(), dim=1)
        self.pairs.append((e_out.detach().double().cpu(), e_orig.double().cpu()))
        while sum(len(a) for a, _ in self.pairs) - len(self.pairs[0][0]) >= self.bank:
            self.pairs.pop(0)
        head = fit_adapted_head(torch.cat([a for a, _ in self.pairs]).numpy(),
                                torch.cat([b for _, b in self.pairs]).numpy(), self.ridge)
        weight, bias = torch.from_numpy(head.weight).to(e_out), torch.from_numpy(head.bias).to(e_out)
        read_back = F.cosine_similarity(e_out @ weight + bias, e_orig, dim=1)
        return (read_back - self.margin).clamp_min(0.0).mean(), read_back.detach()
