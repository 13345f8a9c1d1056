"""`python -m mmp_repro ...`, and `torchrun --nproc_per_node N -m mmp_repro train ...` (torchrun starts a module, not a console script)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
