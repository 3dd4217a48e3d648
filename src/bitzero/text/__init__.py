"""Text: the tokenizer (characters, code subwords, byte fallback, adaptation) and the vocabulary check."""

from bitzero.text.tokenizer import Tokenizer, TokenizerError
from bitzero.text.vocabulary import VocabularyCoverageError, check_vocabulary

__all__ = ["Tokenizer", "TokenizerError", "VocabularyCoverageError", "check_vocabulary"]
