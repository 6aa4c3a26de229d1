"""The Train page's run panel bars and numbers (pages/_train_live.py draws the rest):
plain HTML that, while the run trains, the browser keeps current itself from the
server's progress route (cnnlab.live)."""

from __future__ import annotations

import html
import json

import streamlit as st

from cnnlab import live

# How often a watching browser fetches the run's bars and numbers (cnnlab.live's route).
POLL_S = 1.0

PANEL_ID = "cnnlab-live"
PANEL_STYLE = """<style>
.cnnlab-live .bar {margin: 0 0 0.75rem;}
.cnnlab-live .bar p {margin: 0 0 0.25rem; font-size: 0.875rem;}
.cnnlab-live .track {height: 0.5rem; border-radius: 0.25rem; background: rgba(128,128,128,.2);}
.cnnlab-live .fill {height: 100%%; border-radius: 0.25rem; background: %(colour)s;}
.cnnlab-live .numbers {display: flex; flex-wrap: wrap; gap: 1rem;}
.cnnlab-live .number {flex: 1 1 8rem;}
.cnnlab-live .number p {margin: 0;}
.cnnlab-live .label {font-size: 0.875rem; opacity: 0.7;}
.cnnlab-live .value {font-size: 1.75rem;}
</style>"""
# Fetches the panel's view (cnnlab.live.progress_view) every POLL_S and writes it into
# the elements; stops once the run is done or the panel is gone. The page redraws the
# panel now and then with the view it read: the newest view seen is kept across
# redraws so the numbers never step back.
PANEL_SCRIPT = """<script>(() => {
  const [url, every] = %(args)s;
  const state = window.cnnlabLive = window.cnnlabLive || {};
  clearInterval(state.timer);
  const panel = () => document.getElementById("%(id)s");
  const show = (view) => {
    const root = panel();
    if (!root || root.dataset.run !== view.run_id) return;
    for (const part of ["epoch", "batch"]) {
      const bar = root.querySelector(`[data-part=${part}]`);
      bar.hidden = !view[part];
      if (!view[part]) continue;
      bar.querySelector("p").textContent = view[part].text;
      bar.querySelector(".fill").style.width = `${100 * view[part].fraction}%%`;
    }
    root.querySelectorAll(".value").forEach((cell, i) => {
      cell.textContent = view.numbers[i][1];
    });
    root.dataset.order = view.order;
  };
  const newest = state.newest;
  const root = panel();
  if (newest && root && newest.order > Number(root.dataset.order)) show(newest);
  const poll = async () => {
    if (!panel()) return clearInterval(state.timer);
    if (document.hidden) return;
    try {
      const answer = await fetch(url, {cache: "no-store"});
      if (!answer.ok) return;
      const view = await answer.json();
      const seen = state.newest;
      if (!seen || seen.run_id !== view.run_id || view.order >= seen.order) {
        state.newest = view;
        show(view);
      }
      if (!view.active) clearInterval(state.timer);
    } catch (error) {}  // the server restarting: the next poll tries again
  };
  state.timer = setInterval(poll, every);
})();</script>"""


def progress_url(run_id: str) -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    path = live.ROUTE.format(run_id=run_id)
    return f"{'/' + base if base else ''}{path}?token={live.token(run_id)}"


def live_panel(view: dict) -> None:
    """The run's epoch and batch bars and its numbers (a cnnlab.live.progress_view);
    while the run is active and the server answers the route, the browser keeps them
    current itself."""
    polled = view["active"] and live.route_served()

    def bar(part: str) -> str:
        shown = view[part] or {"text": "", "fraction": 0.0}
        return (
            f'<div class="bar" data-part="{part}"{"" if view[part] else " hidden"}>'
            f'<p>{html.escape(shown["text"])}</p><div class="track">'
            f'<div class="fill" style="width: {100 * shown["fraction"]:.2f}%"></div></div></div>'
        )

    numbers = "".join(
        f'<div class="number"><p class="label">{html.escape(label)}</p>'
        f'<p class="value">{html.escape(value)}</p></div>'
        for label, value in view["numbers"]
    )
    body = (
        f'<div id="{PANEL_ID}" class="cnnlab-live" data-run="{html.escape(view["run_id"])}"'
        f' data-order="{view["order"]}">{bar("epoch")}{bar("batch")}'
        f'<div class="numbers">{numbers}</div></div>'
        + PANEL_STYLE
        % {"colour": st.get_option("theme.primaryColor") or "#3366CC"}
    )
    if polled:
        args = json.dumps([progress_url(view["run_id"]), int(POLL_S * 1000)])
        body += PANEL_SCRIPT % {"args": args.replace("</", "<\\/"), "id": PANEL_ID}
    st.html(body, unsafe_allow_javascript=polled)
