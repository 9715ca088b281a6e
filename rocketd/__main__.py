"""`python -m rocketd` runs the same CLI as the `rocketd` console script."""

from rocketd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
