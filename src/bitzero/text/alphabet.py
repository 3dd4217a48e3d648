"""The base vocabulary: special tokens, byte-fallback tokens, characters and code subwords.

The order here IS the id assignment of ``Tokenizer.default()``; changing it would silently
reassign ids of every tokenizer file built from it, so only ever append.
"""

from __future__ import annotations

# Fixed ids 0..7. "<|end|>" closes every chat turn.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<unk>", "<bos>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
)
# Ids 8..263: one token per byte value, used for characters the vocabulary does not know.
BYTE_TOKENS: tuple[str, ...] = tuple(f"<0x{b:02X}>" for b in range(256))

_ASCII = "\t\n" + "".join(chr(c) for c in range(0x20, 0x7F))
# Emotional expression: faces, hands, hearts, sparkles (U+FE0F makes "❤️" render as emoji).
_EMOJI = (
    "😊😢😍😎🤔😂❤👍👎🙂😔😡😨😮🤢🤗✨🎉💔\ufe0f"
    "😀😃😄😁😅😆😉😘🥰😭😤😱😴😐😕😟😞😩😬🙄😳🥺🤩🤯🙏👋💪👏🙌🔥⭐🌟💡🌈☀💕💖💙💚💛💜"
)
# Typographic punctuation that pasted text and chat corpora carry, plus everyday math signs.
_TYPOGRAPHY = "\u00a0‘’“”–—…•·«»°€£×÷−±≤≥≠≈√π²³½"
# Accented Latin letters common in names (José, Zoë, Müller, François, Søren, Ñuñez, Łukasz).
_LATIN = "áàâäãåçéèêëíìîïñóòôöõøúùûüýÿßæœłÁÀÂÄÅÇÉÈÊËÍÎÑÓÔÖØÚÜÆŒŁ"

BASE_CHARACTERS: tuple[str, ...] = tuple(dict.fromkeys(_ASCII + _EMOJI + _TYPOGRAPHY + _LATIN))

# Code and math patterns (user recommendations §2.2) plus a few frequent ones in Python tasks.
BASE_SUBWORDS: tuple[str, ...] = tuple(dict.fromkeys([
    "def ", "return ", "import ", "class ", "for ", "if ", "else:", "elif ",
    "while ", "try:", "except:", "finally:", "with ", "print(", "self.",
    "==", "!=", ">=", "<=", "+=", "-=", "*=", "/=", "**", "//", "->", "=>",
    "True", "False", "None",
    "    ", "self", "range(", "len(", "def f(", "return", "assert ", "❤\ufe0f",
]))
