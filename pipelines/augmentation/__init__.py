"""The augmentation stage: math variants, the domain mix, the train/validation split."""
