"""`python -m callcenter` runs the same command line as the `callcenter` script."""

from callcenter.cli import main

main()
