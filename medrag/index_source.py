"""Where the served index comes from, and the one status value the UI shows about it.

`open_configured` opens the index the configuration names: a Milvus collection, a Hub dataset repo
at a revision, or a folder; only the default folder (data/index) is built from the bundled sample
corpus when it is missing. A configured folder that exists but is no index is an error and is never
touched, so a mistyped MEDRAG_INDEX_DIR never serves the sample corpus unnoticed. `open_hub` opens a
Hub repo at a commit (medrag.refresh swaps one in on a push).

Each returns an `OpenedIndex`: the index and an `IndexStatus` (the manifest, where it came from, the
attribution recorded in the manifest at build time). The UI reads only that value: it never re-reads
manifest.json nor re-hashes the sample corpus. Shortcut on purpose: an index built before the
attribution was recorded shows the generic "a local corpus" line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from medrag.config import DEFAULT_INDEX_DIR, SAMPLE_INDEX_DIR, PipelineConfig
from medrag.errors import IndexLoadError

log = logging.getLogger(__name__)

SAMPLE_ATTRIBUTION = (
    "The built-in sample corpus: short consumer-health summaries written by the MedRAG project in its own "
    "words (CC BY 4.0), each restating facts from one public page (CDC, MedlinePlus, NHS) and linking to it "
    "as its source. See `data/SAMPLE_CORPUS.md`."
)  # recorded in the sample index's manifest when it is built


@dataclass(frozen=True)
class IndexStatus:
    kind: str  # "folder", "sample", "hub" or "milvus"
    location: str  # the folder, "repo@commit" or "milvus:collection"
    manifest: dict = field(default_factory=dict)  # as the index holds it; shown inert, it may come from anyone

    @property
    def source(self) -> str | None:
        """What names the index in answers' versions instead of its manifest hash: "repo@commit", "milvus:..."."""
        return self.location if self.kind in ("hub", "milvus") else None

    @property
    def attribution(self) -> str | None:
        """The attribution recorded in the manifest when the index was built, if any."""
        extra = self.manifest.get("extra")
        text = extra.get("attribution") if isinstance(extra, dict) else None
        return str(text) if text else None


@dataclass(frozen=True)
class OpenedIndex:
    index: object  # VectorIndex, DiskIndex or MilvusIndex (medrag.indexes)
    status: IndexStatus


def _status(kind: str, location: str, index) -> IndexStatus:
    manifest = getattr(index, "manifest", None)
    return IndexStatus(kind, location, dict(manifest) if isinstance(manifest, dict) else {})


def open_configured(config: PipelineConfig, embedder=None) -> OpenedIndex:
    """The configured index and where it came from."""
    from medrag.indexes import open_index

    if config.index_engine == "milvus":
        index = open_index(config.milvus_uri, config)
        return OpenedIndex(index, _status("milvus", f"milvus:{config.milvus_collection}", index))
    if config.index_repo:
        return open_hub(config.index_repo, config.index_revision, config)
    path = Path(config.index_dir)
    kind = "folder"
    if not (path / "manifest.json").exists():
        build = f"'python index_builder.py --docs YOUR_DOCUMENTS --out {path}'"
        sample = "or unset MEDRAG_INDEX_DIR to serve the built-in sample corpus"
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise IndexLoadError(
                f"The index folder {path} (MEDRAG_INDEX_DIR) exists but holds no MedRAG index (no manifest.json); "
                f"nothing in it was changed. Point MEDRAG_INDEX_DIR at an index folder, build one with {build}, "
                f"{sample}"
            )
        if path.resolve() != DEFAULT_INDEX_DIR.resolve():
            raise IndexLoadError(f"No index at {path} (MEDRAG_INDEX_DIR): build it with {build}, {sample}")
        if Path(config.sample_docs).is_dir():
            from medrag.build import ensure_index

            log.info("no index at %s: building it from the sample corpus %s", path, config.sample_docs)
            ensure_index(
                [config.sample_docs],
                path,
                config,
                embedder=embedder,
                extra={"attribution": SAMPLE_ATTRIBUTION},
                prebuilt=SAMPLE_INDEX_DIR,
            )
            kind = "sample"
    index = open_index(path, config)
    return OpenedIndex(index, _status(kind, str(path), index))


def open_hub(repo: str, revision: str, config: PipelineConfig) -> OpenedIndex:
    """The index in a Hub dataset repo at `revision`, fully loaded and checked; its location is "repo@commit".

    Errors name the repo and commit and what to do (the cache path inside the HF cache is no use to a reader).
    """
    from medrag.embedder import same_model
    from medrag.hub import download_index
    from medrag.index import VectorIndex
    from medrag.indexes import open_index

    found = download_index(repo, revision)
    source = f"{repo}@{found.commit}"
    try:
        manifest = VectorIndex.read_manifest(found.path)
        model, dim = manifest.get("embedding_model", "?"), manifest.get("dim")
        if same_model(str(model), config.embedding_model) and dim == config.embedding_dim:
            index = open_index(found.path, config, verify=True)  # a download is hashed once
            return OpenedIndex(index, _status("hub", source, index))
    except IndexLoadError as e:
        raise IndexLoadError(
            f"The index in dataset repo {source} cannot be loaded: {e}; push it again with "
            f"'python index_builder.py --docs ... --push-to-hub {repo}'"
        ) from e
    raise IndexLoadError(
        f"The index in dataset repo {source} was built with {model} (dim {dim}), but this app embeds questions "
        f"with {config.embedding_model} (dim {config.embedding_dim}): push an index built with "
        f"{config.embedding_model} ('python index_builder.py --docs ... --push-to-hub {repo}'), set "
        f"MEDRAG_EMBEDDING_MODEL={model}, or pin MEDRAG_INDEX_REVISION to a commit that matches"
    )
