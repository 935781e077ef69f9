"""Size limits shared by the loader and the enhancers (one place, documented, counted).

:data:`MAX_MESSAGE_CHARS` bounds the work one event can cause: the enhancers normalise,
template and tokenise only the first that many characters of a message (``m_message`` itself
is kept whole in the events table, and ``e_chars_len`` counts all of it). Real LO2 messages,
stack traces included, stay far below it; the loader counts the events above it
(``long_messages`` in the summary and ``lo2_load_info.json``) and the normaliser logs them.
Without the cap one 20 MB line costs minutes and gigabytes in the regex passes and the token
bags; with it, a 20 MB line costs what a 64 KiB one does after parsing.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 65_536
"""Characters of a message the enhancers look at (the rest is ignored, and counted)."""
