import sys

from .suite import main

# guarded: multiprocessing's fork server imports the main module again
if __name__ == "__main__":
    sys.exit(main())
