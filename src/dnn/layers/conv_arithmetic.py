"""Convolution arithmetic: the output size of a convolution or a pooling layer, and the checks of their arguments.

Output size along one spatial axis (lecture notation)::

    K_eff = D * (K - 1) + 1                       # dilated ("effective") kernel size
    W'    = floor((W - K_eff + 2P) / S) + 1       # W input size, P padding, S stride, D dilation

Pooling uses the same formula; with ``ceil_mode`` the floor becomes a ceiling, except that the last
window must start inside the input or the left padding (PyTorch's ``MaxPool2d`` rule). Every size argument is an
int or an ``(h, w)`` pair; a bad one is a one-line :class:`ConfigError` that names the function and the argument.
"""

from __future__ import annotations

from dnn.checks import int_in, is_int
from dnn.errors import ConfigError

__all__ = ["IntOrPair", "conv_output_size", "int_pair", "pool_output_size"]

IntOrPair = int | tuple[int, int]

# ----------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------


def int_pair(where: str, name: str, value: object, minimum: int) -> tuple[tuple[int, int], bool]:
    """Turn an int or an (h, w) pair into an (h, w) pair; the flag says whether a pair was given."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(is_int(v) and v >= minimum for v in value):
            kind = "positive ints" if minimum == 1 else f"ints >= {minimum}"
            raise ConfigError(f"{where}: {name} must be an int or a pair (h, w) of {kind}, got {value!r}")
        return (value[0], value[1]), True
    v = int_in(f"{where}: {name}", value, minimum)
    return (v, v), False


# ----------------------------------------------------------------------------------------------------
# output-size arithmetic
# ----------------------------------------------------------------------------------------------------


def _conv_size_1d(where: str, axis: str, w: int, k: int, s: int, p: int, d: int) -> int:
    k_eff = d * (k - 1) + 1
    out = (w - k_eff + 2 * p) // s + 1  # floor division, as in the lecture's formula
    if out < 1:
        raise ConfigError(
            f"{where}: input is too small for this kernel: size{axis}={w} with padding={p} gives {w + 2 * p} "
            f"< effective kernel {k_eff} (kernel_size={k}, dilation={d}); expected size + 2*padding >= "
            f"dilation*(kernel_size-1)+1"
        )
    return out


def conv_output_size(
    size: IntOrPair,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> IntOrPair:
    """Spatial output size of a convolution: ``W' = floor((W - K_eff + 2P) / S) + 1``, ``K_eff = D(K-1)+1``.

    Every argument is an int or an ``(h, w)`` pair; the result is an int if all of them are ints, else an
    ``(h', w')`` pair. Agrees with the output shape of :class:`torch.nn.Conv2d`.

    Raises :class:`ConfigError` for a non-positive size, kernel, stride or dilation, a negative padding, or
    when the input (plus padding) is smaller than the effective kernel, i.e. the output would be empty.
    """
    where = "conv_output_size"
    sizes, t0 = int_pair(where, "size", size, 1)
    ks, t1 = int_pair(where, "kernel_size", kernel_size, 1)
    ss, t2 = int_pair(where, "stride", stride, 1)
    ps, t3 = int_pair(where, "padding", padding, 0)
    ds, t4 = int_pair(where, "dilation", dilation, 1)
    as_pair = t0 or t1 or t2 or t3 or t4
    axes = ("[0]", "[1]") if as_pair else ("", "")
    out = tuple(_conv_size_1d(where, axes[i], sizes[i], ks[i], ss[i], ps[i], ds[i]) for i in range(2))
    return out if as_pair else out[0]


def _pool_size_1d(where: str, axis: str, w: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    if p > k // 2:
        raise ConfigError(
            f"{where}: padding{axis} must be at most half the kernel size (kernel_size//2 = {k // 2}), got {p}"
        )
    k_eff = d * (k - 1) + 1
    numerator = w + 2 * p - k_eff + (s - 1 if ceil_mode else 0)
    out = numerator // s + 1  # floor division == rounding towards -inf, as torch's div_rtn
    if ceil_mode and (out - 1) * s >= w + p:
        out -= 1  # the last window would start in the right padding: torch drops it
    if out < 1:
        raise ConfigError(
            f"{where}: input is too small for this kernel: size{axis}={w} with padding={p} gives "
            f"output {out} < 1 (kernel_size={k}, dilation={d}, stride={s}, ceil_mode={ceil_mode}); "
            f"expected size + 2*padding >= dilation*(kernel_size-1)+1"
        )
    return out


def pool_output_size(
    size: IntOrPair,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
) -> IntOrPair:
    """Spatial output size of a pooling layer, as :class:`torch.nn.MaxPool2d` computes it.

    ``W' = floor((W - K_eff + 2P) / S) + 1`` (``ceil`` instead of ``floor`` with ``ceil_mode``, dropping
    a last window that would start in the right padding), ``K_eff = D(K-1)+1``. ``stride`` defaults to
    ``kernel_size``. Every argument is an int or an ``(h, w)`` pair; the result is an int if all of them
    are ints, else a pair.

    Raises :class:`ConfigError` for a non-positive size, kernel, stride or dilation, a padding that is
    negative or larger than ``kernel_size // 2`` (torch's limit), or an empty output.
    """
    where = "pool_output_size"
    if not isinstance(ceil_mode, bool):
        raise ConfigError(f"{where}: ceil_mode must be a bool, got {ceil_mode!r}")
    sizes, t0 = int_pair(where, "size", size, 1)
    ks, t1 = int_pair(where, "kernel_size", kernel_size, 1)
    ss, t2 = (ks, False) if stride is None else int_pair(where, "stride", stride, 1)
    ps, t3 = int_pair(where, "padding", padding, 0)
    ds, t4 = int_pair(where, "dilation", dilation, 1)
    as_pair = t0 or t1 or t2 or t3 or t4
    axes = ("[0]", "[1]") if as_pair else ("", "")
    out = tuple(_pool_size_1d(where, axes[i], sizes[i], ks[i], ss[i], ps[i], ds[i], ceil_mode) for i in range(2))
    return out if as_pair else out[0]
