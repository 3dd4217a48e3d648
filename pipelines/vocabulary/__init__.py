"""The vocabulary stage: validate records, build the tokenizer, check the vocabulary."""
