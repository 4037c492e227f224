"""The small edges a new user meets: typing, docstrings, citation files, the memory
format of one-channel input, huge padding, and the module's channel-count message."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Tuple, Union

import pytest
import torch
import torch.nn.functional as F
from conftest import make_problem

import adaptive_conv_ext
from adaptive_conv_ext import AdaptiveConv2d, adaptive_conv2d
from adaptive_conv_ext import convert, functional, modules, paper, reference

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = [adaptive_conv_ext, functional, modules, reference, paper, convert]


def _public_callables():
    """(qualified name, object) of every public function, class and method the public
    modules define (not what they import)."""
    seen = {}
    for module in PUBLIC_MODULES:
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                seen[f"{module.__name__}.{name}"] = obj
            elif inspect.isclass(obj):
                seen[f"{module.__name__}.{name}"] = obj
                for attr, member in vars(obj).items():
                    if inspect.isfunction(member) and (not attr.startswith("_") or attr == "__init__"):
                        seen[f"{module.__name__}.{name}.{attr}"] = member
    return seen


def test_every_public_function_has_a_docstring():
    found = _public_callables()
    # the ones the issue named, so that this test cannot pass by finding nothing
    for name in ("adaptive_conv_ext.reference.adaptive_conv2d_reference", "adaptive_conv_ext.paper.adaptive_conv2d_paper",
                 "adaptive_conv_ext.functional.adaptive_conv2d", "adaptive_conv_ext.modules.AdaptiveConv2d.forward"):
        assert name in found
    missing = [name for name, obj in found.items()
               if not (obj.__doc__ or "").strip() and not name.endswith(".__init__")]
    assert not missing, f"no docstring: {missing}"


INT_PAIR = Union[int, Tuple[int, int]]
PADDING = Union[int, Tuple[int, int], str]


@pytest.mark.parametrize("fn", [adaptive_conv2d, reference.adaptive_conv2d_reference, AdaptiveConv2d.__init__])
def test_geometry_arguments_are_typed(fn):
    hints = typing.get_type_hints(fn)
    assert hints["stride"] == INT_PAIR and hints["dilation"] == INT_PAIR
    assert hints["padding"] == PADDING
    if fn is AdaptiveConv2d.__init__:
        assert hints["kernel_size"] == INT_PAIR


def test_package_ships_its_type_hints_and_citation_files():
    assert (Path(adaptive_conv_ext.__file__).parent / "py.typed").is_file()  # PEP 561
    version = adaptive_conv_ext.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{version}]" in changelog and "## [Unreleased]" in changelog
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    assert re.search(rf"^version: {re.escape(version)}$", cff, re.M)
    assert re.search(r"^license: BSD-3-Clause$", cff, re.M) and "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    paper_part = cff.split("preferred-citation:", 1)[1]
    assert 'title: "Adaptive Convolutional Kernels"' in paper_part and "year: 2019" in paper_part
    for family in ("Zamora Esquivel", "Cruz Vargas", "Lopez Meyer", "Tickoo"):
        assert f'family-names: "{family}"' in paper_part
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(cff)  # valid YAML with the fields CFF requires
    assert {"cff-version", "message", "title", "authors"} <= set(data)
    assert data["preferred-citation"]["type"] == "conference-paper"


BACKENDS = ["native", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("C, O", [(1, 6), (1, 1), (3, 6)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_output_memory_format_is_conv2d_s(backend, C, O, channels_last):
    """With C = 1 a channels_last tensor is NCHW-contiguous too; F.conv2d still reads its
    strides as channels_last and so must adaptive_conv2d."""
    x, w, kb, b = make_problem(N=2, C=C, O=O, H=7, W=6)
    if channels_last:
        # not .contiguous(memory_format=...): with C = 1 that returns the NCHW tensor itself
        x = x.clone(memory_format=torch.channels_last)
        assert x.stride()[1] == 1
    y = adaptive_conv2d(x, w, kb, b, padding=1, backend=backend)
    expected = F.conv2d(x, w[..., 0, 0].contiguous(), b, padding=1)  # a plain NCHW-contiguous weight
    assert y.stride() == expected.stride(), (y.stride(), expected.stride())
    torch.testing.assert_close(y, adaptive_conv2d(x.contiguous(), w, kb, b, padding=1, backend="reference"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_padding_is_a_value_error_naming_padding(backend):
    x, w, kb, b = make_problem(N=1, C=4, O=6, H=5, W=5)
    # (1, 6, 2000003, 2000003) doubles: about 179 TiB. The allocator would raise a
    # RuntimeError; a ValueError means the check came first.
    with pytest.raises(ValueError, match=r"padding .*\(1000000, 1000000, 1000000, 1000000\).*GiB"):
        adaptive_conv2d(x, w, kb, b, padding=10**6, backend=backend)
    with pytest.raises(ValueError, match="padding"):
        AdaptiveConv2d(4, 6, 3, padding=(10**6, 10**5)).double()(x)  # about 19 TiB
    # meta tensors compute shapes only: no memory, no error
    y = adaptive_conv2d(*(t.to("meta") for t in (x, w, kb, b)), padding=10**6)
    assert y.shape == (1, 6, 2_000_003, 2_000_003)


def test_huge_output_without_padding_names_the_input():
    from adaptive_conv_ext._validation import _check_output_fits_memory, _device_memory_bytes

    x = torch.zeros(1, 1, 2, 2)
    total = _device_memory_bytes(x.device)
    if total is None:
        pytest.skip("this platform does not report its memory (no sysconf)")
    rows = total // 4 + 1  # float32: one element past the machine's memory
    with pytest.raises(ValueError, match="input size"):
        _check_output_fits_memory(x, (1, 1, rows, 1), (0, 0, 0, 0))
    _check_output_fits_memory(x, (1, 1, 16, 16), (1, 1, 1, 1))  # small: no error


def test_module_names_in_channels_on_a_wrong_channel_count():
    layer = AdaptiveConv2d(3, 8, 3, padding=1)
    for shape in ((2, 4, 9, 9), (4, 9, 9)):
        with pytest.raises(ValueError, match=r"in_channels=3 .*got 4"):
            layer(torch.randn(shape))
    assert layer(torch.randn(2, 3, 9, 9)).shape == (2, 8, 9, 9)
