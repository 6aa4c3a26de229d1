"""cnnlab: image-classification experiments with Keras, from a browser or the shell.

The package never imports streamlit: the pages in ``pages/`` draw what these
functions return, and ``python -m cnnlab`` calls the same functions.
"""

from cnnlab.errors import CnnlabError

__all__ = ["CnnlabError"]
__version__ = "0.1.0"
