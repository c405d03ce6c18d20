"""MedRAG's Gradio app: Chat, Sources and About tabs, share links and a JSON `/ask` endpoint.

hysts' Space pattern: settings from the environment at the top, the pipeline built and warmed at
start-up, one `@spaces.GPU` generator around the model call only (medrag.gpu: what crosses into a
ZeroGPU worker and what comes back), then the Blocks, then `demo.queue(...).launch()`.
`build_demo(pipeline)` holds no launch concerns: `main()` hands the Blocks to `medrag.refresh.serve`,
which adds the Hub webhook route when MEDRAG_WEBHOOK_SECRET is set, and starts the poll fallback
when MEDRAG_POLL_INTERVAL > 0. Every per-visitor value (the conversation's turns, medrag.conversation)
lives in `gr.State`, never in a global. The Chat tab is built by small functions around one `ChatTab`
of components: each event yields a dict of the components it updates, so one more output is one more
entry in `ChatTab.outputs()`. The page's CSS and JavaScript live in medrag/static, the warm-up policy
in medrag.warmup; what stays here is UI wiring, the upload panel's too (a visitor's own documents,
medrag.session_docs): this is the only module that imports gradio.

On purpose: a `?q=` share link is read by the page's own JavaScript, and only a non-empty one
starts an answer, so a plain page view never waits for (or takes) an answer slot; on a Space
(`SPACE_ID` set) the copied link is the Space page's, which passes its query string to the app.
Every string a visitor or a document supplies is made inert before it reaches the page
(medrag.ui), LaTeX rendering is off, and toasts (which gradio renders as HTML) are escaped.
Run it: `bash scripts/demo.sh` (serves http://127.0.0.1:7860).
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import spaces  # before medrag (and torch): ZeroGPU must be set up before CUDA is touched
from starlette.middleware import Middleware

from medrag import conversation, warmup
from medrag.api import CompleteAskCalls, check_ask, check_question
from medrag.config import PipelineConfig
from medrag.conversation import Turn
from medrag.errors import InputError, MedRAGError
from medrag.feedback import FeedbackStore, Vote
from medrag.gpu import GPUGenerator, gpu_duration, gpu_stream  # noqa: F401  GPUGenerator: what warm_up wraps with
from medrag.pipeline import RAGPipeline
from medrag.prompts import DISCLAIMER
from medrag.refresh import Refresher, serve
from medrag.request import MODES, Request
from medrag.session_docs import LIMITS, MAX_BYTES, SessionDocs
from medrag.ui import answer_json, answer_markdown, inert, sources_html, status_markdown

log = logging.getLogger("medrag.app")

MAX_CONCURRENCY = int(os.getenv("MEDRAG_MAX_CONCURRENCY", "4"))  # answers computed at once; the rest wait in line
QUEUE_SIZE = int(os.getenv("MEDRAG_QUEUE_SIZE", "64"))  # visitors waiting beyond this are told to retry
SERVER_NAME = os.getenv("GRADIO_SERVER_NAME", "127.0.0.1")  # Spaces set 0.0.0.0 here
SERVER_PORT = int(os.getenv("GRADIO_SERVER_PORT", "7860"))
SPACE_ID = os.getenv("SPACE_ID")  # "owner/name" on a Space: share links then point at the Space page
# encrypts the conversation kept in the visitor's browser; unset: a random one per start, so a restart forgets them
HISTORY_SECRET = os.getenv("MEDRAG_HISTORY_SECRET") or None
FEEDBACK_REPO = os.getenv("MEDRAG_FEEDBACK_REPO") or None  # a Hub dataset repo for votes; unset: votes are not kept
FEEDBACK_DIR = os.getenv("MEDRAG_FEEDBACK_DIR", "outputs/feedback")  # votes wait here for the next scheduled push
EXPORTS = Path(tempfile.gettempdir()) / "medrag-exports"  # the Export button's files, before gradio copies them
CACHE_AGE = 24 * 3600  # seconds an export (ours and gradio's copy) or an uploaded file's copy is kept
UPLOAD_IDLE = 2 * 3600  # seconds: a visitor's own files outlive no session left open and idle this long
_LIVE: weakref.WeakValueDictionary[str, SessionDocs] = weakref.WeakValueDictionary()  # session -> its files
_exports_checked = 0.0  # when old exports were last looked for (time.time())
EXAMPLES = [
    "What are the symptoms of asthma?",
    "How can I lower my blood pressure?",
    "When should a child with a fever see a doctor?",
    "How is strep throat different from a cold?",
]
FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]  # no web-font fetch
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
GENERIC_ERROR = "Something went wrong answering this question; please try again."
THINKING = '<span class="thinking">Searching the sources…</span>'
STATIC = Path(__file__).parent / "medrag" / "static"  # the page's CSS and JavaScript, read once at start
CSS = (STATIC / "app.css").read_text(encoding="utf-8")
# the question in the page's own link: read in the browser, so a view without ?q= never reaches the server
LINK_QUESTION_JS = (STATIC / "link_question.js").read_text(encoding="utf-8").strip()
SHARE_LINK_JS = (STATIC / "share_link.js").read_text(encoding="utf-8").strip()


def share_base(space_id: str | None) -> str | None:
    """Where a share link points: the Space page on a Space (it hands ?q= to the app's iframe), else None
    (the page's own address, known only in the browser)."""
    return f"https://huggingface.co/spaces/{space_id}" if space_id else None


def link_js(base: str | None, copy: bool = False) -> str:
    """JavaScript for the share box: the link that asks `q` again (and, with `copy`, onto the clipboard)."""
    origin = json.dumps(base) if base else "location.origin + location.pathname"
    clip = "if (navigator.clipboard) navigator.clipboard.writeText(link).catch(() => {});" if copy else ""
    return SHARE_LINK_JS.replace("ORIGIN", origin).replace("COPY", clip)


# --- the model call, the only code that runs on the GPU ---------------------------------------
_generate_on_gpu = spaces.GPU(duration=gpu_duration)(gpu_stream)  # duration per call: from its max_new_tokens


def load_pipeline(config: PipelineConfig | None = None) -> RAGPipeline:
    """The configured pipeline, warmed up: see `warm_up`."""
    return warm_up(RAGPipeline(config or PipelineConfig.from_env()))


def warm_up(pipeline: RAGPipeline) -> RAGPipeline:
    """medrag.warmup's policy, with this app's `@spaces.GPU` function around the HF generator's stream."""
    return warmup.warm_up(pipeline, _generate_on_gpu)


def _toast(message: str) -> str:
    return html.escape(message, quote=False)  # gradio renders toast messages as HTML


# --- the Chat tab ---------------------------------------------------------------------------
@dataclass
class ChatTab:
    """The components the chat events read and write; every event names its outputs from here."""

    chatbot: gr.Chatbot
    box: gr.Textbox
    ask: gr.Button
    stop: gr.Button
    clear: gr.Button
    share: gr.Textbox
    copy: gr.Button
    last_q: gr.Textbox  # the latest answered question, read by the share-link JavaScript
    link_q: gr.Textbox  # the page's own ?q=, set in the browser
    top_k: gr.Slider
    mode: gr.Radio
    temperature: gr.Slider
    max_tokens: gr.Slider
    turns: gr.State  # this visitor's list[Turn]: what the chat shows and the follow-up questions lean on
    pending: gr.State  # the Turn being streamed (what has arrived so far), kept when the visitor presses Stop
    interrupted: gr.Textbox  # "stop" or "clear", set in the browser by the button that cancelled the answer
    saved: gr.BrowserState  # the turns as JSON in the visitor's own browser: the conversation survives a reload
    export: gr.DownloadButton  # the conversation with its sources as a Markdown file
    vote: gr.State  # the visitor's latest Vote, until a reason is sent with it
    reason_row: gr.Row  # shown after a vote: an optional reason
    reason: gr.Textbox
    send_reason: gr.Button
    user_docs: gr.State  # this visitor's own files (medrag.session_docs.SessionDocs), searched beside the index
    sources: gr.HTML | None = None  # the Sources tab, set when that tab is built

    def settings(self) -> list:
        """What an answer is asked with besides the question and the conversation: `run`'s last inputs."""
        return [self.top_k, self.mode, self.temperature, self.max_tokens, self.user_docs]

    def outputs(self) -> list:
        """Every component a chat event may update: an event yields a dict of the ones it changes. The /chat
        API returns the ones that are not state in this order, so a new one goes last."""
        return [
            self.chatbot, self.turns, self.pending, self.sources, self.box, self.last_q, self.saved, self.export,
            self.interrupted,
        ]  # fmt: skip

    def keep(self, turns: list[Turn]) -> dict:
        """The updates for a changed conversation: the session's turns, the browser's copy and the export."""
        return {self.turns: turns, self.saved: conversation.save_turns(turns), self.export: export_file(turns)}


def chat_tab(pipeline: RAGPipeline) -> ChatTab:
    cfg = pipeline.config
    chatbot = gr.Chatbot(
        label="MedRAG",
        show_label=False,  # the page's header names it; on a phone the label would cover the first message
        height=440,
        buttons=["copy"],
        placeholder="Ask a health question, or pick an example below.",
        latex_delimiters=[],  # no LaTeX: medical answers need none, and KaTeX would read a visitor's $...$
        editable="user",  # a question can be edited and asked again (the answers after it are dropped)
        elem_id="chatbot",
    )
    with gr.Row(visible=False, elem_id="reason-row") as reason_row:
        reason = gr.Textbox(
            placeholder="Why? (optional: what was wrong or helpful)", show_label=False, container=False, scale=5,
            max_lines=3, elem_id="reason",
        )  # fmt: skip
        send_reason = gr.Button("Send", size="sm", scale=0, min_width=80, elem_id="send-reason")
    with gr.Row(elem_id="ask-row"):
        box = gr.Textbox(
            placeholder="Ask a health question…",
            show_label=False,
            container=False,
            scale=6,
            max_lines=4,
            elem_id="question",
        )
        ask = gr.Button("Ask", variant="primary", scale=1, min_width=90, elem_id="ask")
        stop = gr.Button("Stop", variant="stop", scale=0, min_width=80, elem_id="stop")
        clear = gr.Button("New chat", variant="secondary", scale=0, min_width=90, elem_id="clear")
    gr.Markdown(DISCLAIMER, elem_id="disclaimer")
    gr.Examples(EXAMPLES, inputs=[box], label="Examples")
    user_docs = upload_panel(pipeline)  # ask about your own document: this session's files only
    with gr.Row(elem_id="share-row"):
        share = gr.Textbox(
            show_label=False,
            container=False,
            placeholder="A link that asks the last question again appears here",
            scale=5,
            elem_id="share-link",
        )
        copy = gr.Button("Copy link", size="sm", scale=0, min_width=110, elem_id="copy-link")
        export = gr.DownloadButton("Export chat (.md)", size="sm", scale=0, min_width=150, elem_id="export")
    last_q = gr.Textbox(visible="hidden", elem_id="last-question")
    link_q = gr.Textbox(visible="hidden", elem_id="link-question")
    interrupted = gr.Textbox(visible="hidden", elem_id="interrupted")
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            top_k = gr.Slider(1, 10, value=min(max(cfg.top_k, 1), 10), step=1, label="Sources (top-k)")
            mode = gr.Radio(
                MODES, value=cfg.retrieval_mode if cfg.retrieval_mode in MODES else "hybrid", label="Retrieval"
            )
        with gr.Row():
            # a configured value outside a slider's range would make gradio refuse every question
            temperature = gr.Slider(
                0.0, max(1.0, cfg.temperature), value=cfg.temperature, step=0.05, label="Temperature (model generator)"
            )
            max_tokens = gr.Slider(
                min(32, cfg.max_new_tokens), max(1024, cfg.max_new_tokens), value=cfg.max_new_tokens,
                step=1, label="Max new tokens (model generator)",
            )  # fmt: skip
    return ChatTab(
        chatbot, box, ask, stop, clear, share, copy, last_q, link_q, top_k, mode, temperature, max_tokens,
        gr.State([]), gr.State(None), interrupted,
        gr.BrowserState([], storage_key="medrag-conversation", secret=HISTORY_SECRET),
        export, gr.State(None), reason_row, reason, send_reason, user_docs,
    )  # fmt: skip


def answer_stream(pipeline: RAGPipeline, ui: ChatTab):
    """The chat event: stream one answer into the chat; yields dicts of updates of `ui.outputs()`."""

    def run(question, chat, turns, top_k, mode, temperature, max_new_tokens, user_docs=None):
        turns = list(turns or [])
        shown = conversation.chat_messages(turns)
        try:
            question = check_question("" if question is None else question)
        except MedRAGError as e:
            yield {ui.chatbot: shown, ui.interrupted: ""}
            raise gr.Error(_toast(str(e))) from None
        pending = [*shown, {"role": "user", "content": inert(question)}, _assistant(THINKING)]
        yield {ui.chatbot: pending, ui.box: "", ui.pending: Turn(question, ""), ui.interrupted: ""}
        history = conversation.history(turns, pipeline.config.history_turns)
        answer, failed = None, {ui.chatbot: shown, ui.box: question, ui.pending: None}
        try:
            request = Request(
                top_k=int(top_k),
                mode=mode,
                temperature=temperature,
                max_new_tokens=int(max_new_tokens),
                history=history,
            )  # checked where it is made: a bad value is an InputError below
            # Stop closes the stream, and with it the model
            with closing(pipeline.stream(question, request, user_docs=user_docs)) as answers:
                for answer in answers:
                    if answer.kind == "invalid":
                        gr.Warning(_toast(answer.text))
                        yield failed
                        return
                    pending[-1] = _assistant(answer_markdown(answer))
                    yield {ui.chatbot: pending, ui.pending: Turn.from_answer(answer)}
        except MedRAGError as e:
            log.warning("answering %r failed: %s", question, e)
            yield failed
            raise gr.Error(_toast(str(e))) from None
        except Exception:
            log.exception("answering %r failed", question)
            yield failed
            raise gr.Error(GENERIC_ERROR) from None
        if answer is None:
            yield failed
            raise gr.Error(GENERIC_ERROR)
        for warning in answer.warnings:
            gr.Warning(_toast(warning))
        turns.append(Turn.from_answer(answer))
        yield {
            ui.chatbot: pending,
            **ui.keep(turns),
            ui.pending: None,
            ui.sources: sources_html(answer),
            ui.last_q: answer.question,
        }

    return run


def turn_events(run, ui: ChatTab):
    """Retry, edit and undo of a question (the chatbot's own buttons), and Stop: they all rewrite `turns`."""

    def retry(turns, *settings):
        """Ask the last question again, in place of its answer."""
        if turns:
            yield from run(turns[-1].question, None, turns[:-1], *settings)

    def edit(data: gr.EditData, turns, *settings):
        """Ask the edited question in place of the one at `data.index` (later turns are dropped)."""
        kept = list(turns or [])[: data.index // 2] if isinstance(data.index, int) else list(turns or [])
        yield from run(html.unescape(str(data.value or "")), None, kept, *settings)  # the chat showed it escaped

    def undo(turns):
        """Drop the last question and its answer; the question goes back into the box."""
        if not turns:
            return gr.skip()  # nothing to change (an empty dict would be refused)
        kept = turns[:-1]
        return {ui.chatbot: conversation.chat_messages(kept), **ui.keep(kept), ui.box: turns[-1].question}

    def settle(turns, pending, interrupted):
        """After an answer event was cancelled (Stop, New chat), which closed the model's stream, or failed.
        Stopped: keep what had arrived, marked as stopped, and draw the chat from the kept turns; called again,
        it adds nothing. Cleared: the chat stays empty (this runs after the cancelled event's last message)."""
        if interrupted == "clear":
            return {**new_chat(), ui.interrupted: ""}
        turns = list(turns or [])
        if pending is not None:
            pending.stopped = True
            kept = [*turns, pending]
            return {ui.chatbot: conversation.chat_messages(kept), **ui.keep(kept), ui.pending: None}
        if turns and turns[-1].stopped:
            return {ui.chatbot: conversation.chat_messages(turns)}
        return gr.skip()  # answered in full, or failed: the event's own last message stands

    def new_chat():
        """Forget the conversation, here and in the browser."""
        return {
            ui.chatbot: [],
            **ui.keep([]),
            ui.pending: None,
            ui.sources: sources_html(None),
            ui.last_q: "",
            ui.share: "",
        }

    return retry, edit, undo, settle, new_chat


def wire_chat(demo: gr.Blocks, pipeline: RAGPipeline, ui: ChatTab, link: str, copy_link: str) -> None:
    """The Chat tab's events: ask (button, Enter, ?q= link), retry, edit, undo, stop, share link, clear."""
    run = answer_stream(pipeline, ui)
    retry, edit, undo, settle, new_chat = turn_events(run, ui)
    inputs = [ui.box, ui.chatbot, ui.turns, *ui.settings()]
    then_link = {"fn": None, "inputs": [ui.last_q], "outputs": [ui.share], "js": link, "api_visibility": "private"}
    # the chat event stays callable (undocumented) so tests and the bench can drive sessions; /ask is the API
    answering = [
        ui.ask.click(
            run, inputs, ui.outputs(), concurrency_id="answer", api_name="chat", api_visibility="undocumented"
        ),
        ui.box.submit(run, inputs, ui.outputs(), concurrency_id="answer", api_visibility="private"),
        ui.link_q.change(
            run, [ui.link_q, *inputs[1:]], ui.outputs(), concurrency_id="answer", api_visibility="private"
        ),
        ui.chatbot.retry(
            retry, [ui.turns, *ui.settings()], ui.outputs(), concurrency_id="answer", api_visibility="private"
        ),
        ui.chatbot.edit(
            edit, [ui.turns, *ui.settings()], ui.outputs(), concurrency_id="answer", api_visibility="private"
        ),
    ]
    # Stop and New chat cancel the answer event (and say which, in the browser); the browser then runs the
    # event's failure listeners, where `settle` keeps what had arrived or leaves the chat empty. It is queued,
    # so its message comes after the cancelled event's last ones on the session's one stream
    for event in answering:
        event.failure(
            settle, [ui.turns, ui.pending, ui.interrupted], [*ui.outputs(), ui.share], show_progress="hidden",
            api_visibility="private",
        )  # fmt: skip
        event.then(**then_link)
    ui.chatbot.undo(undo, [ui.turns], ui.outputs(), api_visibility="private", queue=False)
    ui.stop.click(None, None, [ui.interrupted], js="() => 'stop'", cancels=answering, api_visibility="private")
    ui.copy.click(None, [ui.last_q], [ui.share], js=copy_link, api_visibility="private")

    def clear():
        return {**new_chat(), ui.box: ""}

    # New chat, or the chat's own trash button: forgotten now, and again after an answer it cancelled
    for trigger in (ui.clear.click, ui.chatbot.clear):
        trigger(None, None, [ui.interrupted], js="() => 'clear'", cancels=answering, api_visibility="private").then(
            clear, None, [*ui.outputs(), ui.share], api_visibility="private", queue=False
        )

    def restore(saved):
        """The conversation this browser kept, shown again after a reload."""
        turns = conversation.load_turns(saved)
        return {ui.chatbot: conversation.chat_messages(turns), ui.turns: turns, ui.export: export_file(turns)}

    # then `/?q=...`: the browser reads the link; only a question there starts an answer (and takes a slot),
    # after the kept conversation is back, so the answer follows it
    demo.load(restore, [ui.saved], [ui.chatbot, ui.turns, ui.export], api_visibility="private", queue=False).then(
        None, None, [ui.link_q], js=LINK_QUESTION_JS, api_visibility="private"
    )


def export_file(turns: list[Turn]) -> str | None:
    """The conversation as a fresh .md file for the Export button (None: nothing to export yet)."""
    if not turns:
        return None
    EXPORTS.mkdir(parents=True, exist_ok=True)
    _drop_old_exports()
    path = Path(tempfile.mkdtemp(dir=EXPORTS)) / "medrag-conversation.md"
    path.write_text(conversation.export_markdown(turns), encoding="utf-8")
    return str(path)


def _drop_old_exports() -> None:
    """Our exports older than a day (gradio serves its own copy): looked for once an hour, not on every answer."""
    global _exports_checked
    now = time.time()
    if now - _exports_checked < 3600:
        return
    _exports_checked = now
    for old in EXPORTS.iterdir():
        try:
            if now - old.stat().st_mtime > CACHE_AGE:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue  # another session dropped it meanwhile


def wire_feedback(ui: ChatTab, store: FeedbackStore) -> None:
    """👍/👎 on an answer: the vote is kept (medrag.feedback) with its question, sources and versions; a reason may follow."""

    def like(data: gr.LikeData, turns):
        index = data.index if isinstance(data.index, int) else -1
        if data.liked not in (True, False) or index % 2 != 1 or index // 2 >= len(turns or []):
            return {ui.vote: None, ui.reason_row: gr.Row(visible=False)}  # a vote taken back, or not on an answer
        turn = turns[index // 2]
        vote = Vote(bool(data.liked), turn.question, turn.answer, [s.id for s in turn.sources], dict(turn.versions))
        if store.record(vote):
            gr.Info("Thank you: your vote is saved. Add a reason below if you like.")
        else:
            gr.Info(_toast(store.note()))
        return {ui.vote: vote if store.enabled else None, ui.reason_row: gr.Row(visible=store.enabled), ui.reason: ""}

    def send(vote, reason):
        if vote is not None and (reason or "").strip():
            store.record(vote.with_reason(reason))
            gr.Info("Thank you: the reason is saved with your vote.")
        return {ui.vote: None, ui.reason_row: gr.Row(visible=False), ui.reason: ""}

    ui.chatbot.like(like, [ui.turns], [ui.vote, ui.reason_row, ui.reason], api_visibility="private", queue=False)
    for trigger in (ui.send_reason.click, ui.reason.submit):
        trigger(send, [ui.vote, ui.reason], [ui.vote, ui.reason_row, ui.reason], api_visibility="private", queue=False)


# --- the upload panel: ask about your own document ------------------------------------------
# An upload box, its limits, and the visitor's files in `gr.State`.
#
# `upload_panel(pipeline)` builds the components inside the current Blocks and returns the
# `gr.State` that holds this visitor's `SessionDocs` (medrag.session_docs): the Chat event takes it
# as an input and hands it to `pipeline.stream(..., user_docs=docs)`.
#
# Where the files live and when they go:
# - in memory only, in the visitor's own `gr.State`: no other session can reach them;
# - the temporary copy gradio writes on upload is deleted as soon as it is read;
# - dropped when the tab is closed or reloaded (`demo.unload`; gradio itself would keep a closed
#   session's state for an hour), after `UPLOAD_IDLE` without a new upload (the state's
#   `time_to_live`, `delete_callback`), or with "Remove my files".
#
# Shortcuts taken on purpose:
# - No `file_types` on the upload box: gradio would refuse other types with its own message;
#   ours (medrag.session_docs) says what to do, and the limits line names the types.
# - The table from session hash to files, needed because an unload handler gets no state, is weak:
#   it never keeps a session's files alive.
def upload_panel(pipeline) -> gr.State:
    """The upload accordion (call inside `gr.Blocks`); returns the state to pass to the Chat event."""
    docs = gr.State(None, time_to_live=UPLOAD_IDLE, delete_callback=_drop_files)
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
                _discard_upload(path)
        return current, files_markdown(current), None

    def clear(current):
        _drop_files(current)
        return current, files_markdown(current)

    box.upload(add, [box, docs], [docs, listing, box], concurrency_id="upload", api_visibility="private")
    remove.click(clear, [docs], [docs, listing], api_visibility="private", queue=False)
    gr.context.Context.root_block.unload(_unload_files)
    return docs


def files_markdown(docs: SessionDocs | None) -> str:
    """The visitor's files, as a short list under the upload box."""
    if not docs or not docs.files:
        return "No document of yours yet: questions are answered from the built-in sources only."
    lines = [f"- {inert(f.name)}: {f.chunks} passage{'s' * (f.chunks != 1)}" for f in docs.files]
    return "Your documents (searched with the sources, marked *Your document*):\n\n" + "\n".join(lines)


def _drop_files(docs) -> None:
    if isinstance(docs, SessionDocs):
        docs.clear()


def _unload_files(request: gr.Request) -> None:
    """The tab was closed or reloaded: this session's files go now."""
    _drop_files(_LIVE.pop(request.session_hash, None) if request is not None else None)


def _discard_upload(path: str) -> None:
    """Delete gradio's temporary copy of an upload: the text now lives in memory only."""
    try:
        os.remove(path)
    except OSError:
        pass


# --- the page -------------------------------------------------------------------------------
def build_demo(
    pipeline: RAGPipeline,
    refresher: Refresher | None = None,
    space_id: str | None = SPACE_ID,
    feedback: FeedbackStore | None = None,
) -> gr.Blocks:
    """The Blocks for `pipeline` (the About tab reports `refresher`'s checks; share links point at the Space
    `space_id` when set; votes go to `feedback`, kept nowhere when None); launch it with
    `demo.queue(...).launch(**launch_kwargs())`."""
    feedback = feedback or FeedbackStore(None, FEEDBACK_DIR)
    # gradio's copies of uploads and exports are deleted a day after they were made (checked hourly)
    with gr.Blocks(title="MedRAG: cited answers to health questions", delete_cache=(3600, CACHE_AGE)) as demo:
        gr.Markdown(
            "# MedRAG\nAnswers to health questions from trusted medical text, with a numbered citation "
            "for every sentence and the passages beside it.",
            elem_id="header",
        )
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                ui = chat_tab(pipeline)
            with gr.Tab("Sources", id="sources"):
                ui.sources = gr.HTML(sources_html(None), elem_id="sources")
            with gr.Tab("About", id="about"):
                status = gr.Markdown(elem_id="status", latex_delimiters=[])
                gr.Markdown(f"**Your feedback.** {feedback.note()}", elem_id="feedback-note", latex_delimiters=[])
                refresh = gr.Button("Refresh status", size="sm")
        wire_chat(demo, pipeline, ui, link_js(share_base(space_id)), link_js(share_base(space_id), copy=True))
        wire_feedback(ui, feedback)
        for trigger in (demo.load, refresh.click):
            trigger(lambda: status_markdown(pipeline, refresher), None, status, api_visibility="private", queue=False)
        gr.api(ask_api(pipeline), api_name="ask", concurrency_id="answer")
    return demo


def ask_api(pipeline: RAGPipeline):
    def ask(question: str, top_k: int = 5, mode: str = "hybrid") -> dict:
        """Answer a health question from the indexed sources: answer text, sources, citations, versions, timings."""
        try:
            checked = check_ask(question, top_k, mode)
            answer = pipeline.answer(checked.question, Request(top_k=checked.top_k, mode=checked.mode))
        except MedRAGError as e:
            raise gr.Error(str(e)) from None  # a JSON client reads it as text: no HTML escaping here
        except Exception:
            log.exception("/ask %r failed", question)
            raise gr.Error(GENERIC_ERROR) from None
        return answer_json(answer)

    return ask


def _assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def launch_kwargs() -> dict:
    """Look and feel, and the /ask argument completion, passed at launch in gradio 6."""
    return {
        "css": CSS,
        "theme": gr.themes.Soft(primary_hue="teal", font=FONTS, font_mono=MONO_FONTS),
        "app_kwargs": {"middleware": [Middleware(CompleteAskCalls)]},
        # gradio refuses bigger uploads before they are stored; up to this, the upload panel says the file's limit
        "max_file_size": 2 * MAX_BYTES,
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pipeline = load_pipeline()
    refresher = Refresher(pipeline)
    feedback = FeedbackStore(FEEDBACK_REPO, FEEDBACK_DIR)  # pushed every few minutes, and once more at exit
    demo = build_demo(pipeline, refresher, feedback=feedback).queue(
        default_concurrency_limit=MAX_CONCURRENCY, max_size=QUEUE_SIZE
    )
    refresher.start_polling()  # every MEDRAG_POLL_INTERVAL seconds; 0: off
    serve(demo, refresher, server_name=SERVER_NAME, server_port=SERVER_PORT, **launch_kwargs())


if __name__ == "__main__":
    main()
