"""A frozen float32 base layer's product on the CPU: BLAS (``F.linear``) against oneDNN.

Times `burnish.models.onednn_linear.OneDnnLinear`'s kernel against ``F.linear`` (MKL in torch's
x86 wheels) at the layer shapes of burnish-tiny (hidden 64, MLP 256) and of the 34m benchmark
model (hidden 512, MLP 2048), for decode-sized and training-sized row counts; without gradients
(``fwd``, as in sampling) and with the input's gradient (``fwd+bwd``, as in training). Each
shape cycles through enough distinct weights to exceed a 32 MB cache, as a model's layers do, so
the weights stream from memory. Interleaved; prints the median of ``--repeats`` means, the
multiply-adds of each product and the ratio BLAS/oneDNN (above 1: oneDNN is faster). The
crossover in rows x in x out is `burnish.models.onednn_linear.ONEDNN_MIN_MACS`.

    python benchmarks/cpu_matmul.py
    python benchmarks/cpu_matmul.py --rows 32 2048 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from burnish.models import onednn_linear as od

SHAPES = ((64, 64), (64, 256), (256, 64), (512, 512), (512, 2048), (2048, 512))  # (in, out)
CACHE_BYTES = 64 << 20  # weights cycled per shape: at least twice a 32 MB L3


def _layers(d_in: int, d_out: int) -> list[od.OneDnnLinear]:
    n = max(1, min(64, CACHE_BYTES // (4 * d_in * d_out)))
    layers = []
    for _ in range(n):
        layer = torch.nn.Linear(d_in, d_out, bias=False).requires_grad_(False)
        layer.__class__ = od.OneDnnLinear
        layers.append(layer)
    return layers


def _mean_ms(call, layers, x: torch.Tensor, grad_out: torch.Tensor | None) -> float:
    t = time.perf_counter()
    for layer in layers:
        if grad_out is not None:
            torch.autograd.backward(call(layer, x.detach().requires_grad_(True)), grad_out)
        else:
            with torch.inference_mode():
                call(layer, x)
    return (time.perf_counter() - t) / len(layers) * 1e3


def _blas(layer, x):
    return F.linear(x, layer.weight)


def _onednn(layer, x):
    return layer(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[32, 64, 512, 2048])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    if not od.onednn_available():
        raise SystemExit("this torch build has no oneDNN linear kernel (torch.backends.mkldnn)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    od.ONEDNN_MIN_MACS = 0  # time oneDNN at every shape, below the crossover too
    print(f"{a.threads} thread(s), float32, CPU vendor {od._cpu_vendor() or 'unknown'}, "
          f"median of {a.repeats} interleaved means; ratio = BLAS / oneDNN")  # fmt: skip
    for d_in, d_out in SHAPES:
        layers = _layers(d_in, d_out)
        for rows in a.rows:
            x = torch.randn(rows, d_in)
            cells = []
            for grad in (None, torch.randn(rows, d_out)):
                times: dict[str, list[float]] = {"blas": [], "onednn": []}
                _mean_ms(_blas, layers, x, grad), _mean_ms(_onednn, layers, x, grad)  # warm-up
                for _ in range(a.repeats):
                    times["blas"].append(_mean_ms(_blas, layers, x, grad))
                    times["onednn"].append(_mean_ms(_onednn, layers, x, grad))
                blas, one = statistics.median(times["blas"]), statistics.median(times["onednn"])
                cells.append(
                    f"{'fwd' if grad is None else 'fwd+bwd'} {blas:6.2f}/{one:6.2f} ms {blas / one:.2f}"
                )
            macs = rows * d_in * d_out
            print(f"  {d_in:4d} -> {d_out:4d}, {rows:4d} rows ({macs / 2**20:6.1f}M MACs): "
                  + "   ".join(cells))  # fmt: skip


if __name__ == "__main__":
    main()
