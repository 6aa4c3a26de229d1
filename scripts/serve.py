"""Start the app: ``python scripts/serve.py [streamlit options]`` (``scripts/run.sh`` runs it).

It is ``streamlit run app.py`` served as an ``st.App`` with one route of its own: the
progress of a training run as JSON (``cnnlab.live``), which a browser watching the
Train page fetches every second instead of having the page redrawn.

The modules every page needs (pandas, the cnnlab package) are imported before the
server listens: imported on the first visit instead, they would make the first visitor
wait about a second longer for the first page.

It also tells Streamlit, before any visitor, that the app lays out its pages with
``st.navigation`` (in ``app.py``). Streamlit otherwise learns that only when
``app.py`` first runs: until someone opens the root URL of a fresh server, a link to a
page (``/predict``, shared for a demo) ran that page's script alone in Streamlit's
old ``pages/`` folder mode, without ``app.py``: no sidebar, the helper modules listed
as pages, and no viewer password gate.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas  # noqa: E402, F401 - every page but Data draws tables with it
import streamlit as st  # noqa: E402
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
from cnnlab import live  # noqa: E402

# Found by `streamlit run` in this file, which uvicorn then imports as a module.
app = st.App(ROOT / "app.py", routes=live.routes())

if __name__ == "__main__":
    PagesManager.uses_pages_directory = False  # what st.navigation sets on its first call
    # Streamlit reads .streamlit/ (config, secrets) from the working directory too.
    if os.environ.get("CNNLAB_HOME"):
        os.environ["CNNLAB_HOME"] = str(Path(os.environ["CNNLAB_HOME"]).expanduser().resolve())
    os.chdir(ROOT)
    sys.argv = ["streamlit", "run", str(Path(__file__).resolve()), *sys.argv[1:]]
    sys.exit(cli.main())
