"""python -m hanet.synthetic OUT [--train N] [--val N] [--test N] [--size H W] [--seed S]"""
import sys

from .cli import main

sys.exit(main())
