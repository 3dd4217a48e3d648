"""The distillation stage: a full-precision teacher, the ternary student, a ternary baseline."""
