"""MedRAG's Gradio app: Chat, Sources and About tabs, share links and a JSON `/ask` endpoint.

hysts' Space pattern: settings from the environment at the top, the pipeline built and warmed at
start-up, one `@spaces.GPU` generator around the model call only (medrag.gpu: what crosses into a
ZeroGPU worker and what comes back), then the Blocks, then `demo.queue(...).launch()`.
`build_demo(pipeline)` holds no launch concerns: `main()` hands the Blocks to `medrag.refresh.serve`,
which adds the Hub webhook route when MEDRAG_WEBHOOK_SECRET is set, and starts the poll fallback
when MEDRAG_POLL_INTERVAL > 0. Every per-visitor value (chat history, latest answer) lives in
`gr.State`, never in a global.

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
import time

import gradio as gr
import spaces  # before medrag (and torch): ZeroGPU must be set up before CUDA is touched
from starlette.middleware import Middleware

from medrag.api import CompleteAskCalls, check_ask, check_question
from medrag.config import PipelineConfig
from medrag.errors import MedRAGError
from medrag.gpu import GPUGenerator, gpu_duration, gpu_stream
from medrag.pipeline import RAGPipeline
from medrag.prompts import DISCLAIMER
from medrag.refresh import Refresher, serve
from medrag.ui import answer_json, answer_markdown, inert, sources_html, status_markdown

log = logging.getLogger("medrag.app")

MAX_CONCURRENCY = int(os.getenv("MEDRAG_MAX_CONCURRENCY", "4"))  # answers computed at once; the rest wait in line
QUEUE_SIZE = int(os.getenv("MEDRAG_QUEUE_SIZE", "64"))  # visitors waiting beyond this are told to retry
SERVER_NAME = os.getenv("GRADIO_SERVER_NAME", "127.0.0.1")  # Spaces set 0.0.0.0 here
SERVER_PORT = int(os.getenv("GRADIO_SERVER_PORT", "7860"))
SPACE_ID = os.getenv("SPACE_ID")  # "owner/name" on a Space: share links then point at the Space page
HISTORY_MESSAGES = 6  # chat turns handed back to the pipeline: three questions and answers
MODES = ["hybrid", "dense", "bm25"]
EXAMPLES = [
    "What are the symptoms of asthma?",
    "How can I lower my blood pressure?",
    "When should a child with a fever see a doctor?",
    "How is strep throat different from a cold?",
]
FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]  # no web-font fetch
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
GENERIC_ERROR = "Something went wrong answering this question; please try again."

# colours come from the theme's variables only, so the dark theme gets its own
CSS = """
.urgent { border: 2px solid var(--error-border-color); background: var(--error-background-fill);
  color: var(--error-text-color); border-radius: 8px; padding: 10px 14px; }
.declined { border-left: 4px solid var(--border-color-primary); background: var(--background-fill-secondary);
  color: var(--body-text-color); border-radius: 6px; padding: 8px 12px; }
.thinking { color: var(--body-text-color-subdued); font-style: italic; }
#chatbot .message-content a { color: var(--color-accent); font-weight: 600; text-decoration: none; }
#chatbot .message-content a:hover { text-decoration: underline; }
#disclaimer { font-size: 0.85em; opacity: 0.8; }
#ask-row, #share-row { align-items: center; }
#share-link textarea, #share-link input { font-size: 0.8em; }
.sources .source-list { padding-left: 0; list-style: none; }
.sources .source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 14px; margin: 0 0 12px; }
.sources .source.cited { border-left: 4px solid var(--color-accent); }
.sources .rank { font-weight: 700; margin-right: 4px; }
.sources .badge { font-size: 0.75em; background: var(--color-accent-soft); border-radius: 999px; padding: 1px 8px; margin-left: 6px; }
.sources .source-url { font-size: 0.8em; color: var(--body-text-color-subdued); word-break: break-all; }
.sources .source-meta { font-size: 0.8em; color: var(--body-text-color-subdued); margin: 2px 0 6px; }
.sources .source-text { white-space: pre-wrap; margin: 0; line-height: 1.5; }
.sources mark { background: var(--color-accent-soft); color: var(--body-text-color); padding: 0 1px; border-radius: 2px; }
"""

# the question in the page's own link: read in the browser, so a view without ?q= never reaches the server
LINK_QUESTION_JS = "() => (new URLSearchParams(location.search).get('q') || '').trim()"


def share_base(space_id: str | None) -> str | None:
    """Where a share link points: the Space page on a Space (it hands ?q= to the app's iframe), else None
    (the page's own address, known only in the browser)."""
    return f"https://huggingface.co/spaces/{space_id}" if space_id else None


def link_js(base: str | None, copy: bool = False) -> str:
    """JavaScript for the share box: the link that asks `q` again (and, with `copy`, onto the clipboard)."""
    origin = json.dumps(base) if base else "location.origin + location.pathname"
    clip = "if (navigator.clipboard) navigator.clipboard.writeText(link).catch(() => {}); " if copy else ""
    return f"(q) => {{ if (!q) return ''; const link = {origin} + '?q=' + encodeURIComponent(q); {clip}return link; }}"


# --- the model call, the only code that runs on the GPU ---------------------------------------
_generate_on_gpu = spaces.GPU(duration=gpu_duration)(gpu_stream)  # duration per call: from its max_new_tokens


def load_pipeline(config: PipelineConfig | None = None) -> RAGPipeline:
    """The configured pipeline, warmed up: see `warm_up`."""
    return warm_up(RAGPipeline(config or PipelineConfig.from_env()))


def warm_up(pipeline: RAGPipeline) -> RAGPipeline:
    """Load everything before the first visitor: embedder, index (the sample one built if missing), generator.

    The HF generator is wrapped so that only its `stream` runs under `@spaces.GPU`.
    """
    t0 = time.perf_counter()
    retriever = pipeline.retriever  # loads the embedder and the index
    if hasattr(retriever, "search"):
        retriever.search("warm up", k=1, mode="hybrid")  # the first ONNX run and BM25 query are the slow ones
    generator = pipeline.generator
    if hasattr(generator, "load"):
        generator.load()  # the model weights now, not on the first question (a fallback picks extractive here)
    if generator.name == "hf" and not isinstance(generator, GPUGenerator):
        pipeline.swap(generator=GPUGenerator(generator, _generate_on_gpu))
    log.info("pipeline ready in %.1fs (generator: %s)", time.perf_counter() - t0, generator.name)
    return pipeline


def _toast(message: str) -> str:
    return html.escape(message, quote=False)  # gradio renders toast messages as HTML


# --- the UI ---------------------------------------------------------------------------------
def build_demo(pipeline: RAGPipeline, refresher: Refresher | None = None, space_id: str | None = SPACE_ID) -> gr.Blocks:
    """The Blocks for `pipeline` (the About tab reports `refresher`'s checks; share links point at the Space
    `space_id` when set); launch it with `demo.queue(...).launch(**launch_kwargs())`."""
    cfg = pipeline.config
    link, copy_link = link_js(share_base(space_id)), link_js(share_base(space_id), copy=True)

    def run(question, chat, history, top_k, mode, temperature, max_new_tokens):
        """Stream one answer into the chat; yields (chat, history, answer, sources, box, last_q)."""
        keep = gr.skip()
        chat, history = list(chat or []), list(history or [])
        try:
            question = check_question("" if question is None else question)
        except MedRAGError as e:
            yield chat, keep, keep, keep, keep, keep
            raise gr.Error(_toast(str(e))) from None
        pending = [
            *chat,
            {"role": "user", "content": inert(question)},
            _assistant('<span class="thinking">Searching the sources…</span>'),
        ]
        yield pending, keep, keep, keep, "", keep
        overrides = {
            "top_k": int(top_k),
            "mode": mode,
            "temperature": temperature,
            "max_new_tokens": int(max_new_tokens),
        }
        answer = None
        try:
            for answer in pipeline.stream(question, history[-HISTORY_MESSAGES:], **overrides):
                if answer.kind == "invalid":
                    gr.Warning(_toast(answer.text))
                    yield chat, keep, keep, keep, question, keep
                    return
                pending[-1] = _assistant(answer_markdown(answer))
                yield pending, keep, keep, keep, keep, keep
        except MedRAGError as e:
            log.warning("answering %r failed: %s", question, e)
            yield chat, keep, keep, keep, question, keep
            raise gr.Error(_toast(str(e))) from None
        except Exception:
            log.exception("answering %r failed", question)
            yield chat, keep, keep, keep, question, keep
            raise gr.Error(GENERIC_ERROR) from None
        if answer is None:
            yield chat, keep, keep, keep, question, keep
            raise gr.Error(GENERIC_ERROR)
        for warning in answer.warnings:
            gr.Warning(_toast(warning))
        history += [{"role": "user", "content": answer.question}, {"role": "assistant", "content": answer.text}]
        yield pending, history[-HISTORY_MESSAGES:], answer, sources_html(answer), keep, answer.question

    def ask(question: str, top_k: int = 5, mode: str = "hybrid") -> dict:
        """Answer a health question from the indexed sources: answer text, sources, citations, versions, timings."""
        try:
            checked = check_ask(question, top_k, mode)
            answer = pipeline.answer(checked.question, None, top_k=checked.top_k, mode=checked.mode)
        except MedRAGError as e:
            raise gr.Error(str(e)) from None  # a JSON client reads it as text: no HTML escaping here
        except Exception:
            log.exception("/ask %r failed", question)
            raise gr.Error(GENERIC_ERROR) from None
        return answer_json(answer)

    def clear():
        return [], [], None, sources_html(None), "", "", ""

    with gr.Blocks(title="MedRAG: cited answers to health questions") as demo:
        history = gr.State([])  # raw question/answer turns of this visitor, for follow-up questions
        latest = gr.State(None)  # this visitor's latest Answer
        gr.Markdown(
            "# MedRAG\nAnswers to health questions from trusted medical text, with a numbered citation "
            "for every sentence and the passages beside it.",
            elem_id="header",
        )
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chatbot = gr.Chatbot(
                    label="MedRAG",
                    height=440,
                    buttons=["copy"],
                    feedback_options=None,
                    placeholder="Ask a health question, or pick an example below.",
                    latex_delimiters=[],  # no LaTeX: medical answers need none, and KaTeX would read a visitor's $...$
                    elem_id="chatbot",
                )
                with gr.Row(elem_id="ask-row"):
                    box = gr.Textbox(
                        placeholder="Ask a health question…",
                        show_label=False,
                        container=False,
                        scale=6,
                        max_lines=4,
                        elem_id="question",
                    )
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, min_width=90, elem_id="ask")
                    clear_btn = gr.Button("Clear", variant="secondary", scale=0, min_width=80, elem_id="clear")
                gr.Markdown(DISCLAIMER, elem_id="disclaimer")
                gr.Examples(EXAMPLES, inputs=[box], label="Examples")
                with gr.Row(elem_id="share-row"):
                    share = gr.Textbox(
                        show_label=False,
                        container=False,
                        placeholder="A link that asks the last question again appears here",
                        scale=5,
                        elem_id="share-link",
                    )
                    copy_btn = gr.Button("Copy link", size="sm", scale=0, min_width=110, elem_id="copy-link")
                last_q = gr.Textbox(visible="hidden", elem_id="last-question")
                link_q = gr.Textbox(visible="hidden", elem_id="link-question")  # the page's own ?q=, set in the browser
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        top_k = gr.Slider(1, 10, value=min(max(cfg.top_k, 1), 10), step=1, label="Sources (top-k)")
                        mode = gr.Radio(
                            MODES,
                            value=cfg.retrieval_mode if cfg.retrieval_mode in MODES else "hybrid",
                            label="Retrieval",
                        )
                    with gr.Row():
                        # a configured value outside a slider's range would make gradio refuse every question
                        temperature = gr.Slider(
                            0.0, max(1.0, cfg.temperature), value=cfg.temperature, step=0.05,
                            label="Temperature (model generator)",
                        )  # fmt: skip
                        max_tokens = gr.Slider(
                            min(32, cfg.max_new_tokens), max(1024, cfg.max_new_tokens), value=cfg.max_new_tokens,
                            step=1, label="Max new tokens (model generator)",
                        )  # fmt: skip
            with gr.Tab("Sources", id="sources"):
                sources = gr.HTML(sources_html(None), elem_id="sources")
            with gr.Tab("About", id="about"):
                status = gr.Markdown(elem_id="status", latex_delimiters=[])
                refresh = gr.Button("Refresh status", size="sm")

        inputs = [box, chatbot, history, top_k, mode, temperature, max_tokens]
        outputs = [chatbot, history, latest, sources, box, last_q]
        # the chat event stays callable (undocumented) so tests and the bench can drive sessions; /ask is the API
        ask_btn.click(
            run, inputs, outputs, concurrency_id="answer", api_name="chat", api_visibility="undocumented"
        ).then(None, [last_q], [share], js=link, api_visibility="private")
        box.submit(run, inputs, outputs, concurrency_id="answer", api_visibility="private").then(
            None, [last_q], [share], js=link, api_visibility="private"
        )
        # `/?q=...`: the browser reads the link; only a question there starts an answer (and takes a slot)
        demo.load(None, None, [link_q], js=LINK_QUESTION_JS, api_visibility="private")
        link_q.change(run, [link_q, *inputs[1:]], outputs, concurrency_id="answer", api_visibility="private").then(
            None, [last_q], [share], js=link, api_visibility="private"
        )
        copy_btn.click(None, [last_q], [share], js=copy_link, api_visibility="private")
        clear_btn.click(
            clear, None, [chatbot, history, latest, sources, box, last_q, share], api_visibility="private", queue=False
        )
        chatbot.clear(  # the chat's own trash button: forget this visitor's history too
            lambda: clear()[1:],
            None,
            [history, latest, sources, box, last_q, share],
            api_visibility="private",
            queue=False,
        )
        for trigger in (demo.load, refresh.click):
            trigger(lambda: status_markdown(pipeline, refresher), None, status, api_visibility="private", queue=False)
        gr.api(ask, api_name="ask", concurrency_id="answer")
    return demo


def _assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def launch_kwargs() -> dict:
    """Look and feel, and the /ask argument completion, passed at launch in gradio 6."""
    return {
        "css": CSS,
        "theme": gr.themes.Soft(primary_hue="teal", font=FONTS, font_mono=MONO_FONTS),
        "app_kwargs": {"middleware": [Middleware(CompleteAskCalls)]},
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pipeline = load_pipeline()
    refresher = Refresher(pipeline)
    demo = build_demo(pipeline, refresher).queue(default_concurrency_limit=MAX_CONCURRENCY, max_size=QUEUE_SIZE)
    refresher.start_polling()  # every MEDRAG_POLL_INTERVAL seconds; 0: off
    serve(demo, refresher, server_name=SERVER_NAME, server_port=SERVER_PORT, **launch_kwargs())


if __name__ == "__main__":
    main()
