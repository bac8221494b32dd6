from toy.tally import tally, words


def test_words_lowercase_and_split():
    assert words("The cat, the HAT.") == ["the", "cat", "the", "hat"]


def test_tally_counts():
    assert tally("a b a") == {"a": 2, "b": 1}


def test_tally_empty():
    assert tally("") == {}
