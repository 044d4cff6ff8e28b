"""``python -m train`` (and ``torchrun -m train``): the same as ``recflow-train``."""
from train.cli.train import main

if __name__ == "__main__":
    main()
