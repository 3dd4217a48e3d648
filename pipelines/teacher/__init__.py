"""The teacher stage: a pretrained checkpoint imported once, for every later stage."""
