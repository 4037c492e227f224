"""CI gate on `torch-abi-audit adaptive_conv_ext --json`: every compiled library of the
installed package is on the LibTorch stable ABI and needs no torch newer than
--max-min-torch (default 2.11, the oldest torch we must run on). Exit 1 otherwise.
Run it from outside the checkout so that the installed package is the one audited."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def finish(errors, gate: str) -> int:
    """The end of a CI gate (this one and check_registration.py): a FAIL line per error,
    the verdict line, and the exit status."""
    for e in errors:
        print(f"FAIL: {e}")
    print(f"{gate}:", "FAILED" if errors else "ok")
    return 1 if errors else 0


def version_tuple(text: str):
    return tuple(int(part) for part in text.split(".")[:3])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--package", default="adaptive_conv_ext")
    p.add_argument("--max-min-torch", default="2.11")
    args = p.parse_args(argv)
    cli = "import sys; from torch_abi_audit.cli import main; sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", cli, args.package, "--json"],
                         capture_output=True, text=True)
    if out.returncode not in (0, 1):
        print(f"FAIL: torch-abi-audit exited {out.returncode}: {out.stderr.strip()}")
        return 1
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:  # e.g. torch-abi-audit not installed: its traceback says why
        return finish([f"torch-abi-audit gave no JSON report: {out.stderr.strip()[-2000:]}"], "abi audit")
    packages = report if isinstance(report, list) else [report]
    errors = []
    for package in packages:
        if package.get("error"):
            errors.append(f"{package['name']}: {package['error']}")
        if not package.get("extensions"):
            errors.append(f"{package['name']}: no compiled extension found")
        for ext in package.get("extensions", []):
            name, torch_abi = ext["path"].rsplit("/", 1)[-1], ext["torch"]
            floor = torch_abi.get("min_torch_version")
            print(f"{name}: stable={torch_abi['stable']} min torch={floor} "
                  f"(set by {', '.join(torch_abi.get('version_defining_symbols', [])) or '-'})")
            unstable = torch_abi["unstable_symbols"]
            if unstable:
                errors.append(f"{name} uses {len(unstable)} unstable libtorch symbols: {unstable[:5]}")
            if torch_abi.get("unknown_shim_symbols"):
                errors.append(f"{name} uses shim symbols unknown to the audit: {torch_abi['unknown_shim_symbols']}")
            if floor is not None and version_tuple(floor) > version_tuple(args.max_min_torch):
                errors.append(f"{name} needs torch >= {floor}, newer than {args.max_min_torch}")
    return finish(errors, "abi audit")


if __name__ == "__main__":
    sys.exit(main())
