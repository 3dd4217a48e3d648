"""BitZero: a private, self-learning companion AI with ternary weights."""

__version__ = "0.1.0"
