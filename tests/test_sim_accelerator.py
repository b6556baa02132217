"""The simulated accelerator (tests/sim_accelerator.py) fails where CUDA fails, passes where
CUDA passes, and computes what the CPU computes: the rules below are CUDA's, as documented by
PyTorch (tensors of one operation on one device, CPU scalars and CPU index tensors allowed,
no NumPy view of device memory)."""

import numpy as np
import pytest
import torch

import sim_accelerator
from sim_accelerator import SIM_DEVICE, DevicePlacementError, SimTensor, simulated_accelerator


def test_cpu_ids_into_a_model_on_the_device_fail():
    with simulated_accelerator():
        table = torch.nn.Embedding(10, 4).to(SIM_DEVICE)
        assert table.weight.device == SIM_DEVICE
        with pytest.raises(DevicePlacementError, match="two devices"):
            table(torch.arange(3))
        assert table(torch.arange(3, device=SIM_DEVICE)).device == SIM_DEVICE


def test_mixed_elementwise_and_matmul_fail_but_scalars_pass():
    with simulated_accelerator():
        x = torch.ones(2, 3, device=SIM_DEVICE)
        with pytest.raises(DevicePlacementError):
            x + torch.ones(2, 3)
        with pytest.raises(DevicePlacementError):
            torch.ones(4, 2) @ x
        assert (x * torch.tensor(2.0)).device == SIM_DEVICE  # a 0-dim CPU tensor is a scalar
        assert torch.zeros(3).device == torch.device("cpu")  # no device given: the CPU


def test_indexing_follows_cuda():
    with simulated_accelerator():
        x = torch.arange(6.0, device=SIM_DEVICE)
        assert x[torch.tensor([0, 2])].tolist() == [0.0, 2.0]  # CPU indices into the device
        x[torch.tensor([1])] = 7.0
        assert x.tolist()[1] == 7.0
        with pytest.raises(DevicePlacementError, match="indices"):
            torch.arange(6.0)[torch.tensor([0], device=SIM_DEVICE)]


def test_host_reads_follow_cuda():
    with simulated_accelerator():
        x = torch.arange(3, device=SIM_DEVICE)
        assert x.sum().item() == 3 and x.tolist() == [0, 1, 2]
        with pytest.raises(TypeError, match="cpu"):
            x.numpy()
        with pytest.raises(TypeError, match="cpu"):
            np.asarray(x)
        assert x.cpu().numpy().tolist() == [0, 1, 2]
        assert type(x.cpu()) is torch.Tensor


def test_in_place_results_are_the_callers_tensor():
    with simulated_accelerator():
        x = torch.zeros(3, device=SIM_DEVICE)
        y = x.add_(1)
        assert y is x and x.tolist() == [1.0, 1.0, 1.0]
        cpu = torch.zeros(3)
        cpu.copy_(x)  # copies between devices are allowed
        assert cpu.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.skipif(sim_accelerator._ROUNDING, reason="HETCOMP_SIM_ROUNDING changes the floats")
def test_training_on_the_device_computes_what_the_cpu_computes():
    def train(device):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 1)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        ids = torch.arange(20, device=device)
        target = (ids % 2).float().unsqueeze(1)
        for _ in range(5):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids), target)
            loss.backward()
            opt.step()
        return loss.item(), [p.detach().cpu() for p in model.parameters()]

    cpu_loss, cpu_params = train("cpu")
    with simulated_accelerator():
        sim_loss, sim_params = train(SIM_DEVICE)
    assert sim_loss == cpu_loss
    for a, b in zip(cpu_params, sim_params):
        assert type(b) is torch.Tensor and torch.equal(a, b)


def test_outside_the_harness_nothing_changes():
    with simulated_accelerator():
        pass
    assert torch.zeros(2).device == torch.device("cpu")
    assert not isinstance(torch.ones(2) + 1, SimTensor)


def test_factories_from_data_make_device_tensors_with_their_data():
    with simulated_accelerator():
        made = [torch.tensor([1, 2], device=SIM_DEVICE),
                torch.as_tensor(np.array([1, 2]), device=SIM_DEVICE),
                torch.ones(1, device=SIM_DEVICE).new_tensor([1, 2])]
        for x in made:
            assert isinstance(x, SimTensor) and x.tolist() == [1, 2]
        assert torch.ones(1).new_tensor([1]).device == torch.device("cpu")


def test_generators_must_be_on_the_device_of_the_draw():
    before = torch.Generator
    with simulated_accelerator():
        on_device = torch.Generator(device=SIM_DEVICE).manual_seed(0)
        on_cpu = torch.Generator().manual_seed(0)
        assert on_device.device == SIM_DEVICE and on_cpu.device == torch.device("cpu")
        drawn = torch.rand(3, generator=on_device, device=SIM_DEVICE)
        assert isinstance(drawn, SimTensor)
        assert drawn.tolist() == torch.rand(3, generator=on_cpu).tolist()  # same stream
        with pytest.raises(DevicePlacementError, match="generator"):
            torch.rand(3, generator=on_cpu, device=SIM_DEVICE)
        with pytest.raises(DevicePlacementError, match="generator"):
            torch.randperm(3, generator=on_device)
        with pytest.raises(DevicePlacementError, match="generator"):
            torch.zeros(3, device=SIM_DEVICE).exponential_(generator=on_cpu)
    assert torch.Generator is before


def test_python_values_put_into_device_tensors():
    with simulated_accelerator():
        x = torch.zeros(2, 3, dtype=torch.bool, device=SIM_DEVICE)
        x[1, [0, 2]] = True
        assert x.tolist() == [[False, False, False], [True, False, True]]
        assert x[[1, 1], [2, 1]].tolist() == [True, False]
        with simulated_accelerator():  # nested harnesses restore what they found
            pass
        assert torch.Generator(device=SIM_DEVICE).device == SIM_DEVICE


def test_threads_started_inside_follow_the_rules():
    import threading

    seen = []

    def work():
        try:
            x = torch.tensor([1.0, 2.0], device=SIM_DEVICE)
            seen.append(x.tolist())
            x + torch.ones(2)
        except DevicePlacementError:
            seen.append("refused")

    with simulated_accelerator():
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert seen == [[1.0, 2.0], "refused"]


def test_device_tensors_hold_data_for_torch_s_meta_shortcuts(recwarn):
    with simulated_accelerator():
        x = torch.zeros(4, 4, device=SIM_DEVICE)
        torch.nn.init.trunc_normal_(x)  # a no-op on a real meta tensor
        assert x.abs().sum().item() > 0
        layer = torch.nn.Linear(2, 2).to(SIM_DEVICE)
        state = {k: torch.ones_like(v.cpu()) for k, v in layer.state_dict().items()}
        layer.load_state_dict(state)  # torch warns "a no-op" for a real meta parameter
        assert layer.weight.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert not [w for w in recwarn if "meta" in str(w.message)]


def test_host_syncs_are_counted_where_cuda_would_wait():
    from sim_accelerator import count_host_syncs

    with simulated_accelerator():
        x = torch.arange(6.0, device=SIM_DEVICE)
        with count_host_syncs() as syncs:
            y = (x * 2).sum()  # queued work: no wait
            torch.topk(x, 3)
            x[torch.tensor([1, 2])]
        assert sum(syncs.values()) == 0
        with count_host_syncs() as syncs:
            y.item()
            x.tolist()
            x.cpu()
            x[x > 2]  # a boolean mask: the result's size depends on the data
            torch.unique(x)
            torch.zeros(3).copy_(x[:3])
        assert sum(syncs.values()) == 6, syncs
        with count_host_syncs() as syncs:
            torch.arange(3).sum().item()  # CPU work never waits for the device
        assert sum(syncs.values()) == 0


def test_cuda_like_rounding_is_deterministic_and_one_unit_in_the_last_place(monkeypatch):
    """HETCOMP_SIM_ROUNDING=1: device products differ from the CPU's in the last bit for about
    half the values, and the same inputs give the same outputs (as a GPU's kernels do)."""
    monkeypatch.setattr(sim_accelerator, "_ROUNDING", True)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 8, generator=gen), torch.randn(8, 30, generator=gen)
    with simulated_accelerator():
        first, second = ((a.to(SIM_DEVICE) @ b.to(SIM_DEVICE)).cpu() for _ in range(2))
    exact = a @ b
    assert torch.equal(first, second)
    assert 0.3 < (first != exact).float().mean().item() < 0.7
    assert torch.allclose(first, exact, rtol=2 ** -22, atol=0)
