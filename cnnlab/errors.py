"""The one error type a user of cnnlab ever sees."""


class CnnlabError(ValueError):
    """A problem with the user's input or files, worded for the user.

    Pages show ``str(error)``; the command line prints it on one line and exits 2.
    The message names what was wrong and how to fix it.
    """
