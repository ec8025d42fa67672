"""The routed LoRA MLP on its own: each row gets exactly its expert's MLP, computed without reading
the routes on the host, and a row's result does not depend on how the other rows are routed."""

from __future__ import annotations

import torch
from torch import nn

from agentkit.plugins.anymoe.experts import LoraDelta
from agentkit.plugins.anymoe.layer import AnyMoeMLP, MoeGate
from agentkit.plugins.anymoe.routing import StepContext

HIDDEN, INTER, RANK = 16, 24, 4


def layer() -> AnyMoeMLP:
    g = torch.Generator().manual_seed(0)
    base = nn.Module()
    base.gate_up = nn.Linear(HIDDEN, 2 * INTER, bias=False)
    base.down = nn.Linear(INTER, HIDDEN, bias=False)
    shapes = {"gate_proj": (HIDDEN, INTER), "up_proj": (HIDDEN, INTER), "down_proj": (INTER, HIDDEN)}
    deltas = [LoraDelta({m: (torch.randn(RANK, i, generator=g), torch.randn(o, RANK, generator=g))
                         for m, (i, o) in shapes.items()}, scale=0.5) for _ in range(2)]
    gate = MoeGate(HIDDEN, 3, torch.device("cpu"), g)
    return AnyMoeMLP(base, 0, 0, gate, StepContext(), lora=deltas)


def merged(moe: AnyMoeMLP, j: int, x: torch.Tensor) -> torch.Tensor:
    """Expert j as a dense MLP with its delta merged into the weights."""
    wgu, wd = moe.gate_up.weight.detach().clone(), moe.down.weight.detach().clone()
    if j:
        gu, dn = moe.lora_gu, moe.lora_down
        rows = gu.expert == j
        wgu += (gu.a_t[:, rows] @ gu.b[rows]).t()
        rows = dn.expert == j
        wd += (dn.a_t[:, rows] @ dn.b[rows]).t()
    gate, up = (x @ wgu.t()).chunk(2, dim=-1)
    return (torch.nn.functional.silu(gate) * up) @ wd.t()


def test_each_row_gets_its_experts_mlp():
    moe = layer()
    x = torch.randn(6, HIDDEN, generator=torch.Generator().manual_seed(1))
    route = torch.tensor([0, 1, 2, 2, 0, 1])
    with torch.no_grad():
        out = moe._routed(x, route)
        for i, j in enumerate(route.tolist()):
            torch.testing.assert_close(out[i], merged(moe, j, x[i:i + 1])[0], rtol=1e-5, atol=1e-5)
        assert torch.equal(moe._routed(x, torch.zeros(6, dtype=torch.long)), moe._base(x))  # exact zero delta


def test_a_rows_result_does_not_depend_on_the_other_rows_routes():
    moe = layer()
    x = torch.randn(8, HIDDEN, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        all_one = moe._routed(x, torch.ones(8, dtype=torch.long))
        mixed = moe._routed(x, torch.tensor([1, 0, 2, 1, 1, 2, 0, 1]))
    ones = torch.tensor([0, 3, 4, 7])
    assert torch.equal(mixed[ones], all_one[ones])


def test_routing_lora_experts_never_reads_routes_on_the_host(monkeypatch):
    moe = layer()

    def refuse(self):
        raise AssertionError("host sync in the routed MLP (a tensor read as a Python value)")

    for name in ("tolist", "item", "__bool__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    with torch.no_grad():
        moe._routed(torch.randn(3, HIDDEN), torch.tensor([0, 1, 2]))
