"""The object cache of setup.py's build (see ObjectCache)."""

import os
import shutil


class ObjectCache:
    """Objects kept between builds in $ADAPTIVE_CONV_OBJECT_CACHE (scripts/install.sh sets
    it), so that a rebuild compiles only the C++ files whose source, included headers
    (the compiler's -MMD list) or command line changed. Off when the variable is unset
    (pip install ., wheels: every file compiled afresh)."""

    def __init__(self, path: str, signature: str):
        self.path, self.deps, self.sig = path, path + ".d", path + ".cmd"
        self.signature = signature

    @classmethod
    def entry(cls, root_dir: str, src: str, signature: str):
        root = os.environ.get("ADAPTIVE_CONV_OBJECT_CACHE")
        if not root:
            return None
        os.makedirs(root, exist_ok=True)
        return cls(os.path.join(root, os.path.relpath(src, root_dir).replace(os.sep, "_") + ".o"), signature)

    def restore(self, obj: str) -> bool:
        """Copy the kept object to `obj` if it is still what the compiler would produce."""
        try:
            if open(self.sig).read() != self.signature:
                return False
            built = os.path.getmtime(self.path)
            text = open(self.deps).read().replace("\\\n", " ")
            deps = text.split(":", 1)[1].split()
            if any(os.path.getmtime(d) > built for d in deps):
                return False
        except (OSError, IndexError):
            return False
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        shutil.copy2(self.path, obj)
        return True

    def store(self, obj: str) -> None:
        shutil.copy2(obj, self.path)
        with open(self.sig, "w") as f:
            f.write(self.signature)
