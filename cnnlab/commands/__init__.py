"""One module per group of command-line verbs; see ``cnnlab.cli``."""
