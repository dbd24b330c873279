"""snnsim.neurons against the frameworks' own modules: the same float32 currents in, the same
spikes and membranes out, bit for bit, for every reset mechanism and reset order."""

from __future__ import annotations

import numpy as np
import pytest
from snnsim import neurons

torch = pytest.importorskip("torch")

T, N = 40, 257


def _currents(seed: int, scale: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((T, N)) * scale + 0.3).astype(np.float32)
    x[5:9, :16] = np.float32(1.0)  # exact ties with the threshold happen in real traces
    return x


def _run_torch(module, x: np.ndarray, states: tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    spikes, trace = [], {k: [] for k in states}
    with torch.no_grad():
        for t in range(x.shape[0]):
            out = module(torch.from_numpy(x[t]))
            spikes.append(out[0].numpy() > 0)
            for k, v in zip(states, out[1:], strict=True):
                trace[k].append(v.numpy().copy())
    return np.stack(spikes), {k: np.stack(v) for k, v in trace.items()}


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("beta", [0.9, 1.0, 0.37])
def test_snntorch_leaky_is_reproduced_exactly(reset, reset_delay, beta):
    snntorch = pytest.importorskip("snntorch")
    x = _currents(1)
    lif = snntorch.Leaky(beta=beta, threshold=1.0, reset_mechanism=reset, reset_delay=reset_delay, init_hidden=False)
    lif.mem = torch.zeros(N)
    want_spk, want = _run_torch(lambda i: lif(i, lif.mem), x, ("mem",))
    got_spk, got = neurons.run(neurons.SnnTorchLeaky(beta=beta, threshold=1.0, reset=reset,
                                                     reset_delay=reset_delay), x)
    assert np.array_equal(got_spk, want_spk)
    assert np.array_equal(got["mem"], want["mem"])
    assert want_spk.any() and not want_spk.all()


def test_snntorch_leaky_with_learned_per_neuron_beta_and_threshold():
    snntorch = pytest.importorskip("snntorch")
    rng = np.random.default_rng(3)
    beta = rng.uniform(0.5, 1.2, N).astype(np.float32)  # above 1 is clamped, as snnTorch does
    thr = rng.uniform(0.5, 1.5, N).astype(np.float32)
    x = _currents(4)
    lif = snntorch.Leaky(beta=torch.from_numpy(beta), threshold=torch.from_numpy(thr), learn_beta=True,
                         learn_threshold=True)
    lif.mem = torch.zeros(N)
    want_spk, want = _run_torch(lambda i: lif(i, lif.mem), x, ("mem",))
    got_spk, got = neurons.run(neurons.SnnTorchLeaky(beta=beta, threshold=thr), x)
    assert np.array_equal(got_spk, want_spk) and np.array_equal(got["mem"], want["mem"])


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("reset_delay", [True, False])
def test_snntorch_synaptic_is_reproduced_exactly(reset, reset_delay):
    snntorch = pytest.importorskip("snntorch")
    x = _currents(2, scale=0.3)
    syn = snntorch.Synaptic(alpha=0.8, beta=0.9, threshold=1.0, reset_mechanism=reset, reset_delay=reset_delay)
    syn.syn, syn.mem = torch.zeros(N), torch.zeros(N)
    want_spk, want = _run_torch(lambda i: syn(i, syn.syn, syn.mem), x, ("syn", "mem"))
    got_spk, got = neurons.run(neurons.SnnTorchSynaptic(alpha=0.8, beta=0.9, threshold=1.0, reset=reset,
                                                        reset_delay=reset_delay), x)
    assert np.array_equal(got_spk, want_spk)
    assert np.array_equal(got["syn"], want["syn"]) and np.array_equal(got["mem"], want["mem"])


def _run_sj(node, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spikes, vs = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spikes.append(node(torch.from_numpy(x[t])).numpy() > 0)
            vs.append(node.v.numpy().copy() if torch.is_tensor(node.v) else np.full(N, node.v, np.float32))
    return np.stack(spikes), np.stack(vs)


@pytest.mark.parametrize("v_reset", [0.0, None, -0.25])
def test_spikingjelly_if_is_reproduced_exactly(v_reset):
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    x = _currents(5)
    want_spk, want_v = _run_sj(sj.IFNode(v_threshold=1.0, v_reset=v_reset), x)
    got_spk, got = neurons.run(neurons.SpikingJellyIF(v_threshold=1.0, v_reset=v_reset), x)
    assert np.array_equal(got_spk, want_spk) and np.array_equal(got["v"], want_v)


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.25])
@pytest.mark.parametrize("tau", [2.0, 3.7])
def test_spikingjelly_lif_is_reproduced_exactly(decay_input, v_reset, tau):
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    x = _currents(6, scale=1.2)
    want_spk, want_v = _run_sj(sj.LIFNode(tau=tau, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset), x)
    got_spk, got = neurons.run(neurons.SpikingJellyLIF(tau=tau, decay_input=decay_input, v_threshold=1.0,
                                                       v_reset=v_reset), x)
    assert np.array_equal(got_spk, want_spk)
    assert np.array_equal(got["v"], want_v)
    assert want_spk.any() and not want_spk.all()


def test_unknown_reset_is_refused():
    with pytest.raises(ValueError):
        neurons.SnnTorchLeaky(beta=0.9, reset="half")


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.25])
def test_spikingjelly_plif_is_reproduced_exactly(decay_input, v_reset):
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    x = _currents(7, scale=1.2)
    node = sj.ParametricLIFNode(init_tau=3.3, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset)
    q = node.w.detach().sigmoid().numpy()
    want_spk, want_v = _run_sj(node, x)
    got_spk, got = neurons.run(neurons.SpikingJellyPLIF(q=q, decay_input=decay_input, v_threshold=1.0,
                                                        v_reset=v_reset), x)
    assert np.array_equal(got_spk, want_spk) and np.array_equal(got["v"], want_v)
    assert want_spk.any() and not want_spk.all()


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("all_to_all", [False, True])
def test_snntorch_rleaky_is_reproduced_exactly(reset, reset_delay, all_to_all):
    snntorch = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    x = _currents(8, scale=0.5)
    if all_to_all:
        lif = snntorch.RLeaky(beta=0.9, linear_features=N, reset_mechanism=reset, reset_delay=reset_delay)
        weight = lif.recurrent.weight.detach().numpy()
        bias = lif.recurrent.bias.detach().numpy()

        def rec(spk):  # the recurrent nn.Linear, evaluated by torch as the graph's delayed edge would be
            with torch.no_grad():
                return lif.recurrent(torch.from_numpy(spk)).numpy()
        assert weight.shape == (N, N) and bias.shape == (N,)
    else:
        lif = snntorch.RLeaky(beta=0.9, V=0.35, all_to_all=False, reset_mechanism=reset, reset_delay=reset_delay)

        def rec(spk):
            return spk * np.float32(0.35)
    spk0, mem0 = lif.init_rleaky()
    lif.spk, lif.mem = torch.zeros(N), torch.zeros(N)
    spikes, mems = [], []
    with torch.no_grad():
        for t in range(T):
            spk, mem = lif(torch.from_numpy(x[t]), lif.spk, lif.mem)
            lif.spk, lif.mem = spk, mem
            spikes.append(spk.numpy() > 0)
            mems.append(mem.numpy().copy())
    got_spk, got = neurons.run_recurrent(neurons.SnnTorchRLeaky(beta=0.9, reset=reset, reset_delay=reset_delay),
                                         x, rec)
    assert np.array_equal(got_spk, np.stack(spikes)) and np.array_equal(got["mem"], np.stack(mems))


def test_models_are_built_from_checked_parameters_and_named_back():
    beta = np.linspace(0.5, 0.9, N)
    m = neurons.neuron_model("snntorch.leaky", {"beta": beta, "threshold": 2, "reset": "zero"})
    assert isinstance(m, neurons.SnnTorchLeaky) and m.beta.dtype == np.float32 and m.threshold == np.float32(2)
    assert neurons.model_name(m) == "snntorch.leaky"
    assert neurons.model_name(neurons.neuron_model("spikingjelly.if", {"v_reset": None})) == "spikingjelly.if"
    # the same dynamics as a model built directly
    x = _currents(9)
    a, _ = neurons.run(m, x)
    b, _ = neurons.run(neurons.SnnTorchLeaky(beta=beta.astype(np.float32), threshold=2.0, reset="zero"), x)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", ["IF", "LIF", "CubaLIF"])
def test_nir_neurons_give_the_spikes_of_the_nir_importer(kind, tmp_path):
    """A Linear -> neuron NIR graph imported and simulated by export/nir.py, against the same
    neuron stepped by snnsim.neurons on the same synaptic currents."""
    nir = pytest.importorskip("nir")
    from snnsim.export.nir import workload_from_nir

    rng = np.random.default_rng(11)
    n_in, n_out, steps, dt = 6, 5, 30, 1e-3
    w = rng.standard_normal((n_out, n_in)) * 2.0
    thr = np.full(n_out, 1.0)
    params = {"IF": dict(r=np.full(n_out, 400.0), v_threshold=thr, v_reset=np.zeros(n_out)),
              "LIF": dict(tau=np.full(n_out, 5e-3), r=np.full(n_out, 2.0), v_leak=np.zeros(n_out),
                          v_threshold=thr, v_reset=np.zeros(n_out)),
              "CubaLIF": dict(tau_syn=np.full(n_out, 2e-3), tau_mem=np.full(n_out, 5e-3), r=np.full(n_out, 2.0),
                              v_leak=np.zeros(n_out), v_threshold=thr, v_reset=np.zeros(n_out),
                              w_in=np.full(n_out, 1.0))}[kind]
    node = getattr(nir, kind)(**params)
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n_in])), "fc": nir.Linear(weight=w),
                            "lif": node, "output": nir.Output(output_type=np.array([n_out]))},
                     edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    x = rng.random((2, n_in))
    wl = workload_from_nir(g, inputs=x, time_steps=steps, dt=dt)
    want = np.unpackbits(wl.recorded["spikes/lif"], axis=-1, count=n_out).astype(bool)  # (samples, T, n_out)
    cur = np.broadcast_to((x @ w.T)[:, None, :], (2, steps, n_out))
    if kind == "CubaLIF":
        model = neurons.neuron_model("nir.cubalif", {"dt": dt, "tau": params["tau_mem"], "tau_syn": params["tau_syn"],
                                                     "r": params["r"], "w_in": params["w_in"]})
    else:
        model = neurons.neuron_model("nir.lif", {"dt": dt, "r": params["r"],
                                                 **({"tau": params["tau"]} if kind == "LIF" else {})})
    for s in range(2):
        got, _ = neurons.run(model, cur[s])
        assert np.array_equal(got, want[s]), kind
    assert want.any() and not want.all()


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("all_to_all", [False, True])
def test_snntorch_rsynaptic_is_reproduced_exactly(reset, all_to_all):
    snntorch = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    x = _currents(10, scale=0.3)
    if all_to_all:
        syn = snntorch.RSynaptic(alpha=0.8, beta=0.9, linear_features=N, reset_mechanism=reset)

        def rec(spk):
            with torch.no_grad():
                return syn.recurrent(torch.from_numpy(spk)).numpy()
    else:
        syn = snntorch.RSynaptic(alpha=0.8, beta=0.9, V=0.35, all_to_all=False, reset_mechanism=reset)

        def rec(spk):
            return spk * np.float32(0.35)
    spk, cur, mem = torch.zeros(N), torch.zeros(N), torch.zeros(N)
    spikes, syns, mems = [], [], []
    with torch.no_grad():
        for t in range(T):
            spk, cur, mem = syn(torch.from_numpy(x[t]), spk, cur, mem)
            spikes.append(spk.numpy() > 0)
            syns.append(cur.numpy().copy())
            mems.append(mem.numpy().copy())
    model = neurons.neuron_model("snntorch.rsynaptic", {"alpha": 0.8, "beta": 0.9, "reset": reset})
    got_spk, got = neurons.run_recurrent(model, x, rec)
    assert np.array_equal(got_spk, np.stack(spikes))
    assert np.array_equal(got["syn"], np.stack(syns)) and np.array_equal(got["mem"], np.stack(mems))
    assert got_spk.any() and not got_spk.all()
