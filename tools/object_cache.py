"""The object cache of setup.py's build (see ObjectCache)."""

import hashlib
import os
import shutil
import time


class ObjectCache:
    """Objects kept between builds in $ADAPTIVE_CONV_OBJECT_CACHE (scripts/install.sh sets
    it), so that a rebuild compiles only the C++ files whose source, included headers
    (the compiler's -MMD list) or command line changed. Off when the variable is unset
    (pip install ., wheels: every file compiled afresh).

    Another build may also read them (shared(): CI's wheel build, in another checkout and
    against another torch, takes the torch-free kernel objects install.sh compiled)."""

    def __init__(self, path: str, signature: str, root_dir: str = "."):
        self.path, self.deps, self.sig = path, path + ".d", path + ".cmd"
        self.digest_path = path + ".inputs"  # sha256 of every input's content (shared use)
        self.signature = signature
        self.root_dir = root_dir

    @classmethod
    def entry(cls, root_dir: str, src: str, signature: str):
        root = os.environ.get("ADAPTIVE_CONV_OBJECT_CACHE")
        if not root:
            return None
        os.makedirs(root, exist_ok=True)
        return cls(cls._path(root, root_dir, src), signature, root_dir)

    @classmethod
    def shared(cls, root_dir: str, src: str, signature: str):
        """A read-only entry in $ADAPTIVE_CONV_SHARED_OBJECTS (another build's cache), or
        None. With $ADAPTIVE_CONV_SHARED_OBJECTS_READY set, waits first until that file
        exists (the other build has finished: install.sh's stamp), at most 30 minutes."""
        root = os.environ.get("ADAPTIVE_CONV_SHARED_OBJECTS")
        if not root:
            return None
        ready = os.environ.get("ADAPTIVE_CONV_SHARED_OBJECTS_READY")
        if ready and not os.path.exists(ready):
            print(f"adaptive_conv_ext: waiting for {ready} (the build whose objects are shared)", flush=True)
            deadline = time.monotonic() + 1800
            while not os.path.exists(ready) and time.monotonic() < deadline:
                time.sleep(1)
        return cls(cls._path(root, root_dir, src), signature, root_dir)

    @staticmethod
    def _path(cache_root: str, root_dir: str, src: str) -> str:
        return os.path.join(cache_root, os.path.relpath(src, root_dir).replace(os.sep, "_") + ".o")

    def _inputs(self):
        """The source and every header the compiler read (its -MMD list); relative paths
        are the build tree's."""
        text = open(self.deps).read().replace("\\\n", " ")
        return [os.path.join(self.root_dir, d) for d in text.split(":", 1)[1].split()]

    def _reads_torch(self) -> bool:
        """Whether a libtorch header is among the inputs: then the object depends on the
        torch it was built against, and no other build may take it."""
        return any(f"{os.sep}torch{os.sep}" in d for d in self._inputs())

    def _digest(self) -> str:
        h = hashlib.sha256()
        for path in self._inputs():
            with open(path, "rb") as f:
                h.update(os.path.relpath(path, self.root_dir).encode() + b"\0" + f.read() + b"\0")
        return h.hexdigest()

    def restore(self, obj: str) -> bool:
        """Copy the kept object to `obj` if it is still what the compiler would produce:
        no input it read is newer than it."""
        def unchanged():
            built = os.path.getmtime(self.path)
            return all(os.path.getmtime(d) <= built for d in self._inputs())
        return self._restore_if(obj, unchanged)

    def restore_shared(self, obj: str) -> bool:
        """restore() for an object another build compiled: only if it read no libtorch
        header (so the torch it was built against does not matter) and every input it
        read has, in this tree, the content it had then."""
        def same_torch_free_inputs():
            return not self._reads_torch() and open(self.digest_path).read() == self._digest()
        return self._restore_if(obj, same_torch_free_inputs)

    def _restore_if(self, obj: str, inputs_ok) -> bool:
        """Copies the object to `obj` if it was built by this command line and inputs_ok()."""
        try:
            if open(self.sig).read() != self.signature or not inputs_ok():
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
        try:  # only a torch-free object is ever shared: the others' inputs are not hashed
            digest = "" if self._reads_torch() else self._digest()
        except (OSError, IndexError):
            digest = ""
        with open(self.digest_path, "w") as f:
            f.write(digest)
