"""``python -m kd_edge`` is the same as the ``kd-edge`` console script."""
from kd_edge.cli import main

if __name__ == "__main__":
    main()
