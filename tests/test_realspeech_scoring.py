"""How the real-speech bench scores transcripts (``devkit.realspeech.normalise``): spelling that is not an
error must not count as one on either side. The case that made this file: the TIDIGITS call "two nine three
four zero", written "29340" by Whisper, counted as 5 errors (one token against five) in every tuning
programme that used it."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from devkit import realspeech as rs

DIGITS = "zero one two three four five six seven eight nine".split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def spoken(n: int) -> str:
    """``n`` (0-99) as an English speaker says it, hyphenated the way a transcript writes it."""
    if n < 20:
        return "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen " \
               "fifteen sixteen seventeen eighteen nineteen".split()[n]
    return TENS[n // 10 - 2] + ("" if n % 10 == 0 else "-" + DIGITS[n % 10])


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=12), st.sampled_from([" ", ", ", " - "]))
@example("29340", " ")
def test_a_digit_string_and_the_same_digits_spoken_score_the_same(digits: str, sep: str) -> None:
    words = sep.join(DIGITS[int(d)] for d in digits)
    assert rs.normalise(digits) == rs.normalise(words) == " ".join(digits)
    assert rs.normalise(f"Dial {digits}.") == rs.normalise(f"dial {sep.join(digits)}")
    assert rs.wer(f"call {words} now", f"Call {digits} now.") == 0.0


@given(st.integers(min_value=0, max_value=99))
def test_a_number_under_a_hundred_in_words_or_digits_scores_the_same(n: int) -> None:
    assert rs.normalise(spoken(n)) == rs.normalise(str(n)), spoken(n)
    assert rs.normalise(spoken(n).replace("-", " ")) == rs.normalise(str(n))


def test_one_wrong_digit_is_one_error_not_a_whole_number() -> None:
    assert rs.wer("two nine three four zero", "29341") == 1 / 5
    assert rs.wer("press 1 to accept", "Press one to accept.") == 0.0
    assert rs.wer("twenty nine", "twenty five") == 1 / 2  # "2 9" / "2 5"


def test_phone_keys_and_compound_spellings_are_not_errors() -> None:
    assert rs.normalise("press * to toggle pause, press # to enter a new dictation filename") == \
        rs.normalise("Press star to toggle pause. Press pound to enter a new dictation file name.")
    assert rs.wer("Press 3 to record a message for another mailbox.",
                  "Press three to record a message for another mail box.") == 0.0
    # real differences still count
    assert rs.wer("the pound key", "the hash key") == 1 / 3
    assert rs.wer("clubs", "close") == 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("abcxyz019 .,-'*#?!\n") + ["twenty", " nine", " mr", " mailbox", " un"]),
                max_size=30).map("".join), st.sampled_from(["en", "es", "fr"]))
def test_normalising_is_idempotent_and_leaves_only_plain_words(text: str, language: str) -> None:
    once = rs.normalise(text, language)
    assert rs.normalise(once, language) == once
    assert once == " ".join(once.split())
    assert all(tok.isalnum() for tok in once.split()), once
    assert all(len(tok) == 1 for tok in once.split() if tok.isdigit()), once
