"""scripts/install.sh and scripts/python: which environment they use (the full install is
run by CI on a fresh clone; here only what takes no minutes)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="bash scripts")


def _python_wrapper(env_overrides, *args):
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(env_overrides)
    return subprocess.run(["bash", str(ROOT / "scripts" / "python"), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_scripts_python_runs_the_active_virtual_environment(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    proc = _python_wrapper({"VIRTUAL_ENV": str(venv)}, "-c", "print('from the venv')")
    assert proc.returncode == 0 and proc.stdout.strip() == "from the venv", proc.stderr


def test_scripts_python_without_an_environment_says_what_to_run(tmp_path):
    proc = _python_wrapper({"VIRTUAL_ENV": str(tmp_path / "none")}, "-c", "print(1)")
    assert proc.returncode == 1
    assert "bash scripts/install.sh" in proc.stderr and str(tmp_path / "none") in proc.stderr


def test_install_script_parses_and_never_uses_the_system_interpreter():
    script = ROOT / "scripts" / "install.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    # every pip call goes through the environment's interpreter, never a bare python3/pip
    assert "PY=$venv/bin/python" in text
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        assert "pip install" not in code or '"$PY" -m pip' in code or "PIP[@]" in code or "$PY -m pip" in code, line
    assert "sys.prefix == sys.base_prefix" in text  # refuses an interpreter outside a venv
    assert "https://download.pytorch.org/whl/cpu" in text and "+cpu" in text


def test_object_cache_reuses_an_object_only_while_its_inputs_are_unchanged(tmp_path, monkeypatch):
    """setup.py's per-file rebuild (install.sh sets ADAPTIVE_CONV_OBJECT_CACHE): an object
    is reused only with the same command line and no newer source or included header."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from object_cache import ObjectCache
    finally:
        sys.path.pop(0)
    monkeypatch.setenv("ADAPTIVE_CONV_OBJECT_CACHE", str(tmp_path / "cache"))
    src, header, obj = tmp_path / "k.cpp", tmp_path / "k.h", tmp_path / "out" / "k.o"
    src.write_text("#include \"k.h\"\n")
    header.write_text("// v1\n")
    entry = ObjectCache.entry(str(tmp_path), str(src), "g++ -O3")
    assert not entry.restore(str(obj))  # nothing kept yet
    obj.parent.mkdir()
    obj.write_bytes(b"object v1")
    # what g++ -MMD writes, with a continuation line
    pathlib_deps = f"{obj}: {src} \\\n {header}\n"
    (tmp_path / "cache").mkdir(exist_ok=True)
    open(entry.deps, "w").write(pathlib_deps)
    entry.store(str(obj))
    obj.unlink()
    assert entry.restore(str(obj)) and obj.read_bytes() == b"object v1"
    assert not ObjectCache.entry(str(tmp_path), str(src), "g++ -O2").restore(str(obj))  # other flags
    later = os.path.getmtime(entry.path) + 10
    os.utime(header, (later, later))  # an included header changed
    assert not entry.restore(str(obj))
    header.unlink()  # a header that no longer exists
    assert not entry.restore(str(obj))


def test_shared_object_is_taken_only_with_the_same_torch_free_inputs(tmp_path, monkeypatch):
    """CI's wheel build takes install.sh's torch-free kernel objects (ObjectCache.shared):
    from another tree, only with the same command line, inputs equal in content (not just
    older), and no libtorch header among them."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from object_cache import ObjectCache
    finally:
        sys.path.pop(0)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ADAPTIVE_CONV_OBJECT_CACHE", str(cache))
    monkeypatch.setenv("ADAPTIVE_CONV_SHARED_OBJECTS", str(cache))
    trees = []
    for name in ("checkout", "copy"):
        tree = tmp_path / name
        (tree / "csrc").mkdir(parents=True)
        (tree / "csrc" / "k.cpp").write_text('#include "k.h"\n')
        (tree / "csrc" / "k.h").write_text("// v1\n")
        trees.append(tree)
    checkout, copy = trees
    entry = ObjectCache.entry(str(checkout), str(checkout / "csrc" / "k.cpp"), "g++ -O3 -I<root>/csrc")
    obj = tmp_path / "k.o"
    obj.write_bytes(b"object v1")
    open(entry.deps, "w").write(f"{obj}: csrc/k.cpp \\\n csrc/k.h\n")  # -MMD's relative paths
    entry.store(str(obj))

    def take(signature="g++ -O3 -I<root>/csrc"):
        out = tmp_path / "out" / "k.o"
        out.unlink(missing_ok=True)
        shared = ObjectCache.shared(str(copy), str(copy / "csrc" / "k.cpp"), signature)
        return shared.restore_shared(str(out)) and out.read_bytes() == b"object v1"

    assert take()
    assert not take("g++ -O2 -I<root>/csrc")  # other flags
    (copy / "csrc" / "k.h").write_text("// v2\n")
    old = os.path.getmtime(entry.path) - 100
    os.utime(copy / "csrc" / "k.h", (old, old))  # other content, though older than the object
    assert not take()
    (copy / "csrc" / "k.h").write_text("// v1\n")
    assert take()
    torch_header = tmp_path / "site-packages" / "torch" / "include" / "ops.h"
    torch_header.parent.mkdir(parents=True)
    torch_header.write_text("// a libtorch header\n")
    open(entry.deps, "a").write(f" {torch_header}\n")  # the object read a torch header
    obj.write_bytes(b"object v1")
    entry.store(str(obj))  # its inputs' digest now has the header too
    assert not take()
