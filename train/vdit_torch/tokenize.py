"""Prompt → token ids (docs/model-format.md, Tokens).

ids = SentencePiece ids of the text (no BOS), then EOS (id 1); a sequence longer than
max_tokens keeps its first max_tokens − 1 ids plus EOS.  No padding.  The empty negative
prompt is [1]; an empty prompt (the empty string) is an error.
"""

import sentencepiece as spm

EOS_ID = 1


def finish(ids, max_tokens):
    """Appends EOS and truncates to max_tokens."""
    ids = list(ids)
    if len(ids) + 1 > max_tokens:
        ids = ids[:max_tokens - 1]
    return ids + [EOS_ID]


class Tokenizer:
    def __init__(self, path, max_tokens):
        self.path = str(path)
        self.max_tokens = int(max_tokens)
        self.sp = spm.SentencePieceProcessor(model_file=self.path)

    @property
    def vocab_size(self):
        return self.sp.get_piece_size()

    def pieces(self, text):
        return self.sp.encode(text, out_type=str)

    def encode(self, text):
        """ids of a prompt: an error when empty."""
        if text is None or text == "":
            raise ValueError("empty prompt")
        return finish(self.sp.encode(text), self.max_tokens)

    def encode_negative(self, text):
        """ids of a negative prompt: [EOS] when empty or None."""
        return finish(self.sp.encode(text or ""), self.max_tokens)
