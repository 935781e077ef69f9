"""Errors that are the user's to fix.

Library code raises :class:`UserError` for bad input (missing folders, wrong schema, corrupt
files, contradictory options). CLIs catch it, print one readable line and exit with code 2;
they never show a traceback for it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or options; the message names the file or flag and the fix."""

    exit_code = 2
