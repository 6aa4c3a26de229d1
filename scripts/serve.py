"""Start the app: ``python scripts/serve.py [streamlit options]`` (``scripts/run.sh`` runs it).

It is ``streamlit run app.py``, with the modules every page needs (pandas, the cnnlab
package) imported before the server listens: imported on the first visit instead, they
would make the first visitor wait about a second longer for the first page.

It also tells Streamlit, before any visitor, that the app lays out its pages with
``st.navigation`` (in ``app.py``). Streamlit otherwise learns that only when
``app.py`` first runs: until someone opens the root URL of a fresh server, a link to a
page (``/predict``, shared for a demo) ran that page's script alone in Streamlit's
old ``pages/`` folder mode, without ``app.py``: no sidebar, the helper modules listed
as pages, and no viewer password gate.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas  # noqa: E402, F401 - every page but Data draws tables with it
from streamlit.runtime.pages_manager import PagesManager  # noqa: E402
from streamlit.web import cli  # noqa: E402

import cnnlab.access  # noqa: E402, F401
import cnnlab.data.augment  # noqa: E402, F401
import cnnlab.data.health  # noqa: E402, F401
import cnnlab.data.ingest  # noqa: E402, F401
import cnnlab.limits  # noqa: E402, F401
import cnnlab.plots  # noqa: E402, F401
import cnnlab.runs  # noqa: E402, F401
import cnnlab.train.recipe  # noqa: E402, F401

if __name__ == "__main__":
    PagesManager.uses_pages_directory = False  # what st.navigation sets on its first call
    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *sys.argv[1:]]
    sys.exit(cli.main())
