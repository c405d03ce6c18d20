"""The "Ask about your own document" panel: an upload box, its limits, and the visitor's files in `gr.State`.

`upload_panel(pipeline)` builds the components inside the current Blocks and returns the
`gr.State` that holds this visitor's `SessionDocs` (medrag.session_docs): the Chat event takes it
as an input and hands it to `pipeline.stream(..., user_docs=docs)`.

Where the files live and when they go:
- in memory only, in the visitor's own `gr.State`: no other session can reach them;
- the temporary copy gradio writes on upload is deleted as soon as it is read;
- dropped when the tab is closed or reloaded (`demo.unload`; gradio itself would keep a closed
  session's state for an hour), after `IDLE_SECONDS` without a new upload (the state's
  `time_to_live`, `delete_callback`), or with "Remove my files".

Shortcuts taken on purpose:
- No `file_types` on the upload box: gradio would refuse other types with its own message;
  ours (medrag.session_docs) says what to do, and the limits line names the types.
- The table from session hash to files, needed because an unload handler gets no state, is weak:
  it never keeps a session's files alive.
"""

from __future__ import annotations

import html
import logging
import os
import weakref
from pathlib import Path

import gradio as gr

from medrag.errors import InputError
from medrag.session_docs import LIMITS, SessionDocs
from medrag.ui import inert

log = logging.getLogger(__name__)

IDLE_SECONDS = 2 * 3600  # a visitor's files outlive no session left open and idle this long
_LIVE: weakref.WeakValueDictionary[str, SessionDocs] = weakref.WeakValueDictionary()  # session hash -> its files


def upload_panel(pipeline) -> gr.State:
    """The upload accordion (call inside `gr.Blocks`); returns the state to pass to the Chat event."""
    docs = gr.State(None, time_to_live=IDLE_SECONDS, delete_callback=_drop)
    with gr.Accordion("Ask about your own document", open=False, elem_id="upload-panel"):
        gr.Markdown(LIMITS, elem_id="upload-limits")
        box = gr.File(label="Upload a document", file_count="single", type="filepath", elem_id="upload")
        listing = gr.Markdown(files_markdown(None), elem_id="upload-files")
        remove = gr.Button("Remove my files", size="sm", elem_id="upload-remove")

    def add(path, current, request: gr.Request):
        current = current if isinstance(current, SessionDocs) else SessionDocs(pipeline.embedder, pipeline.config)
        if request is not None and request.session_hash:
            _LIVE[request.session_hash] = current
        if path:
            try:
                gr.Info(html.escape(current.add_file(path, Path(path).name).message, quote=False))
            except InputError as e:
                gr.Warning(html.escape(str(e), quote=False))  # toasts render HTML: a file name stays text
            except Exception:
                log.exception("upload of %r failed", Path(path).name)
                gr.Warning("This file could not be added; please try again or upload another one.")
            finally:
                _discard(path)
        return current, files_markdown(current), None

    def clear(current):
        _drop(current)
        return current, files_markdown(current)

    box.upload(add, [box, docs], [docs, listing, box], concurrency_id="upload", api_visibility="private")
    remove.click(clear, [docs], [docs, listing], api_visibility="private", queue=False)
    gr.context.Context.root_block.unload(_unload)
    return docs


def files_markdown(docs: SessionDocs | None) -> str:
    """The visitor's files, as a short list under the upload box."""
    if not docs or not docs.files:
        return "No document of yours yet: questions are answered from the built-in sources only."
    lines = [f"- {inert(f.name)}: {f.chunks} passage{'s' * (f.chunks != 1)}" for f in docs.files]
    return "Your documents (searched with the sources, marked *Your document*):\n\n" + "\n".join(lines)


def _drop(docs) -> None:
    if isinstance(docs, SessionDocs):
        docs.clear()


def _unload(request: gr.Request) -> None:
    """The tab was closed or reloaded: this session's files go now."""
    _drop(_LIVE.pop(request.session_hash, None) if request is not None else None)


def _discard(path: str) -> None:
    """Delete gradio's temporary copy of an upload: the text now lives in memory only."""
    try:
        os.remove(path)
    except OSError:
        pass
