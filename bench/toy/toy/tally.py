"""Word counts, kept in memory or in PostgreSQL."""

import re

WORD = re.compile(r"[a-z0-9']+")


def words(text):
    """The lower-case words of `text`, in order."""
    return WORD.findall(text.lower())


def tally(text):
    """A dict word -> count."""
    counts = {}
    for w in words(text):
        counts[w] = counts.get(w, 0) + 1
    return counts


def store(conn, text):
    """Writes the tally of `text` into a temporary table of the connection
    and returns the rows ordered by count (desc) then word."""
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS tally (word text PRIMARY KEY, n int NOT NULL)")
        cur.execute("TRUNCATE tally")
        cur.executemany("INSERT INTO tally (word, n) VALUES (%s, %s)", list(tally(text).items()))
        cur.execute("SELECT word, n FROM tally ORDER BY n DESC, word")
        return cur.fetchall()
