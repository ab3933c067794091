"""What optuna-dashboard shows of a study: the report's findings as the study's note, the
train/val/gap curves and the gap against dropout as custom figures, the objectives' names.

The dashboard reads all of it from the Optuna storage (study system attributes), so a user who
opens it sees what droplab found without opening the report file. Written when the report is
(every ``droplab report`` and every study close), replacing the previous note and figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
import pandas as pd

from droplab import metrics
from droplab.render.page import Block, to_markdown
from droplab.study.plots import Curves, band_order, width_band

# Sections of the report that make the note: the findings, not the bookkeeping.
NOTE_SECTIONS = (
    "Best configuration",
    "Gap reduction against dropout 0",
    "Test split (best configuration only)",
)
CURVES_ID = "droplab-curves"
GAP_ID = "droplab-gap-vs-dropout"
NOTE_LIMIT = 5000  # what droplab's tracker keeps of a tag value


def note_markdown(blocks: Sequence[Block], report: str) -> str:
    """The report's findings sections as Markdown, and where the whole report is."""
    keep: list[Block] = []
    inside = False
    for kind, content in blocks:
        if kind == "h1":
            keep.append((kind, content))
        elif kind == "h2":
            inside = content in NOTE_SECTIONS
            if inside:
                keep.append((kind, content))
        elif inside and kind != "img":
            keep.append((kind, content))
    keep.append(("p", f"Full report (tables, plots, failures): {report}"))
    return to_markdown(keep)


def fit_note(note: str, limit: int = NOTE_LIMIT) -> str:
    """``note`` cut at a line boundary to ``limit`` characters (an MLflow tag's room)."""
    if len(note) <= limit:
        return note
    tail = "\n\n(cut here: the full findings are in the report)\n"
    return note[: note.rfind("\n", 0, limit - len(tail))] + tail


def curves_figure(curves: Sequence[Curves]) -> Any:
    """Train and val loss (eval mode) and their gap per epoch, one colour per trial (the best
    trials first, then the dropout-0 controls)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("loss (eval mode)", "gap/loss"))
    for i, c in enumerate(curves):
        colour = _PALETTE[i % len(_PALETTE)]
        gap = [v - t for t, v in zip(c.train_loss, c.val_loss, strict=True)]
        for name, values, dash, col in (
            (f"{c.title} train", c.train_loss, "dot", 1),
            (f"{c.title} val", c.val_loss, "solid", 1),
            (f"{c.title} gap", gap, "solid", 2),
        ):
            line = {"color": colour, "dash": dash}
            trace = go.Scatter(x=list(c.epochs), y=values, name=name, mode="lines", line=line)
            figure.add_trace(trace, row=1, col=col)
    figure.update_layout(title="Best trials and dropout-0 controls: train vs val", height=420)
    figure.update_xaxes(title_text="epoch")
    return figure


def gap_figure(frame: pd.DataFrame) -> Any:
    """``final/gap_loss`` against dropout for complete trials, one colour per width band."""
    import plotly.graph_objects as go

    done = frame[(frame["state"] == "COMPLETE") & frame[metrics.FINAL_GAP_LOSS].notna()]
    figure = go.Figure()
    bands = done["width"].map(width_band)
    for i, band in enumerate(band_order(list(bands))):
        part = done[bands == band]
        figure.add_trace(
            go.Scatter(
                x=part["dropout"],
                y=part[metrics.FINAL_GAP_LOSS],
                mode="markers",
                name=f"width {band}",
                marker={"color": _PALETTE[i % len(_PALETTE)], "size": 9},
                text=[f"trial {int(n)}" for n in part["number"]],
            )
        )
    figure.update_layout(
        title="Gap after the last epoch against dropout (positive = overfitting)",
        xaxis_title="dropout p",
        yaxis_title=metrics.FINAL_GAP_LOSS,
        height=420,
    )
    return figure


def publish(study: optuna.Study, note: str, figures: dict[str, Any]) -> None:
    """Replace the study's note and droplab's figures in the storage optuna-dashboard reads."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    save_note(study, note)
    for graph_id, figure in figures.items():
        save_plotly_graph_object(study, figure, graph_object_id=graph_id)


_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
