"""The seven questions of issue 12, asked as visitors ask them, through the real pipeline (real
embedder, extractive generator) on a small corpus written here that reproduces each situation:
a narrower source for the general question, a page without the asked fact, an abstract with
method labels, a list fragment repeated by overlapping chunks, a page that asks its own questions.

Each answer must answer from the sources or say what they lack, and no quoted sentence may read
as more general than its source. The fixture texts restate the public pages named beside them.
"""

from __future__ import annotations

import os

import pytest

from medrag.citations import answer_sentences
from medrag.config import PipelineConfig
from medrag.index import VectorIndex
from medrag.pipeline import RAGPipeline
from medrag.prompts import INTRO, says_what_is_missing
from medrag.types import Chunk
from medrag.usefulness import states_narrower_as_general

DOCS = [
    # MedlinePlus "Dementia"
    ("dementia", "Dementia (information)", "Dementia is the name for a group of symptoms caused by disorders that "
     "affect the brain. It is not a specific disease. Memory loss is a common symptom of dementia, but memory loss "
     "by itself does not mean you have dementia. Many different diseases can cause dementia, including Alzheimer's "
     "disease and stroke."),
    # MedlinePlus Genetics "CHMP2B-related frontotemporal dementia"
    ("ftd-1", "CHMP2B-related frontotemporal dementia (information)", "CHMP2B-related frontotemporal dementia is a "
     "progressive brain disorder that affects personality, behavior, and language."),
    ("ftd-2", "CHMP2B-related frontotemporal dementia (inheritance)", "This condition is inherited in an autosomal "
     "dominant pattern, which means one altered copy of the CHMP2B gene in each cell is enough to cause the disorder."),
    # MedlinePlus "Flu" and "Flu Shot"
    ("flu", "Flu (information)", "Flu is a respiratory infection caused by a number of viruses that pass through the "
     "air. Between 5% and 20% of people in the U.S. get the flu each year. Symptoms of the flu come on suddenly and "
     "include fever, cough, sore throat, headache, chills and body aches. Most people with the flu recover on their "
     "own without medical care."),
    ("flushot", "Flu Shot (information)", "The main way to keep from getting the flu is to get a yearly flu vaccine. "
     "The flu vaccine causes antibodies to develop in your body about two weeks after you get it."),
    # NHLBI "Arrhythmia"
    ("arr-1", "Arrhythmia (information)", "An arrhythmia is a problem with the rate or rhythm of your heartbeat. "
     "Your heart may beat too quickly, too slowly, or with an irregular pattern."),
    ("arr-2", "Arrhythmia (treatment)", "A procedure called catheter ablation is used to treat some arrhythmias if "
     "medicines do not work. During the procedure, a thin, flexible tube is put into a blood vessel and guided to "
     "the heart. Energy sent through the tube destroys the small area of heart tissue that causes the abnormal "
     "heartbeat."),
    # PubMed 21880023 (Songoygard et al., BJOG 2012), structured as a PubMedQA context
    ("pqa", "PMID 21880023 (2012)", "Objective: To study whether exercise during pregnancy reduces the risk of "
     "postnatal depression.\nDesign: Randomized controlled trial.\nMethods: The intervention was a 12 week "
     "exercise program during pregnancy, with weekly group sessions led by physiotherapists.\nResults: Scores "
     "suggesting depression three months after birth were not significantly less common in the exercise group "
     "than in the control group."),
    # MedlinePlus "Exercise and Physical Fitness"
    ("fit", "Exercise and Physical Fitness (information)", "Regular physical activity is one of the most important "
     "things you can do for your health. It can help control your weight and strengthen your bones and muscles."),
    # MedlinePlus "Knee Injuries and Disorders"; NHLBI "Peripheral Artery Disease", its list as two overlapping chunks
    ("knee", "Knee Injuries and Disorders (information)", "Knee problems can cause pain and difficulty walking. The "
     "most common disease affecting the knee is osteoarthritis. The cartilage in the knee gradually wears away, "
     "causing pain and swelling. Injuries to ligaments and tendons also cause knee problems."),
    ("pad", "Peripheral Artery Disease (symptoms)", "Symptoms of peripheral artery disease happen in the leg "
     "muscles during physical activity, such as walking or climbing stairs, and may include\n- pain, numbness, "
     "aching, or heaviness in the leg muscles\n- cramping in the hips, thighs or calves"),
    ("pad", "Peripheral Artery Disease (symptoms)", "- aching, or heaviness in the leg muscles\n- cramping in the "
     "hips, thighs or calves\nThe pain goes away after resting."),
    # MedlinePlus "Psoriasis"
    ("pso", "Psoriasis (information)", "Psoriasis is a skin disease that causes itchy or sore patches of thick, red "
     "skin with silvery scales. The most common form is plaque psoriasis. It usually shows up on the scalp, knees, "
     "elbows and lower back. A problem with your immune system causes psoriasis, and it sometimes runs in families."),
    # MedlinePlus "Canker Sores": the corpus knows the word "contagious", as the shared corpus does
    ("canker", "Canker Sores (information)", "Canker sores are small, round sores in your mouth. Canker sores "
     "are not contagious."),
    # MedlinePlus "Epilepsy"; MedlinePlus Genetics "Juvenile myoclonic epilepsy", opening with its own questions
    ("epi", "Epilepsy (information)", "Epilepsy is a brain disorder that causes people to have recurring seizures. "
     "Epilepsy has many possible causes, including illness, brain injury, and abnormal brain development. In many "
     "cases, the cause is unknown."),
    ("jme", "juvenile myoclonic epilepsy (inheritance)", "Is juvenile myoclonic epilepsy inherited?\nIf I have "
     "juvenile myoclonic epilepsy, will my children also have it?\nThe inheritance pattern of juvenile myoclonic "
     "epilepsy is not completely understood. When the condition is caused by mutations in the GABRA1 gene, it is "
     "inherited in an autosomal dominant pattern."),
]  # fmt: skip


@pytest.fixture(scope="module")
def pipeline(embedder):
    chunks = [Chunk(f"{d}#{i}", d, title, text) for i, (d, title, text) in enumerate(DOCS)]
    vectors = embedder.embed([c.embed_text for c in chunks])
    index = VectorIndex.build(
        chunks, vectors, model_id=embedder.model_id, dim=vectors.shape[1], chunker={}, corpus_sha256="fixture"
    )
    return RAGPipeline(PipelineConfig(generator="extractive", top_k=5), embedder=embedder, index=index)


def quotes(ans):
    """(claim without markers and introduction, the numbers it cites) for each quoted sentence."""
    return [(INTRO.sub("", s.split(" [")[0]), n) for s, n in answer_sentences(ans.text) if n]


def check_common(ans, topic):
    """Answered (not declined), sources listed, every quote verbatim and supported, none more general than its source."""
    assert ans.kind == "answer" and ans.sources, ans.text
    assert not states_narrower_as_general(ans, topic), ans.text
    for claim, numbers in quotes(ans):
        assert any(claim in ans.sources[n - 1].chunk.text for n in numbers), claim
    assert not ans.unsupported, ans.unsupported
    assert len({c for c, _ in quotes(ans)}) == len(quotes(ans)), "a sentence quoted twice"


def test_dementia_inherited_names_the_narrower_topic(pipeline):
    ans = pipeline.answer("Is dementia inherited or acquired?")
    check_common(ans, "dementia")
    assert (
        "For CHMP2B-related frontotemporal dementia: This condition is inherited" in ans.text
        or says_what_is_missing(ans.text)
    )
    assert "autosomal dominant" not in ans.text.split("For CHMP2B")[0]  # never before the topic is named


def test_flu_duration_says_what_the_sources_lack(pipeline):
    ans = pipeline.answer("How long does the flu last?")
    check_common(ans, "influenza")
    assert ans.text.startswith("The sources describe Flu") and "but do not say how long it lasts." in ans.text
    assert "two weeks" not in ans.text  # the vaccine's two weeks are not how long the flu lasts
    assert ans.citations and all(c.supported for c in ans.citations)  # what it quotes is cited and found


def test_arrhythmia_after_ablation_does_not_answer_with_how_ablation_is_done(pipeline):
    ans = pipeline.answer("Can arrhythmia come back after ablation?")
    check_common(ans, "arrhythmia")
    assert says_what_is_missing(ans.text) and "whether it can come back" in ans.text


def test_exercise_in_pregnancy_skips_abstract_labels_and_methods(pipeline):
    ans = pipeline.answer("Is it safe to exercise during pregnancy?")
    check_common(ans, "exercise during pregnancy")
    for label in ("Objective", "Methods", "Design", "12 week", "To study whether"):
        assert label not in ans.text
    # the study's finding, said to be one study's, or what the sources do not say
    assert "In one study (PMID 21880023): Scores suggesting" in ans.text or (
        says_what_is_missing(ans.text) and "whether it is safe" in ans.text
    )


def test_knee_on_stairs_no_fragment_and_nothing_twice(pipeline):
    ans = pipeline.answer("my knee hurts when I climb stairs, what could it be?")
    check_common(ans, "knee pain")
    assert "osteoarthritis" in ans.text
    assert "aching, or heaviness in the leg muscles [" not in ans.text.replace("\n- ", " ")  # never a fragment alone
    assert ans.text.count("aching, or heaviness") <= 1


def test_psoriasis_contagious_says_what_the_sources_lack(pipeline):
    ans = pipeline.answer("Is psoriasis contagious?")
    check_common(ans, "psoriasis")
    assert "The sources describe Psoriasis but do not say whether it spreads from person to person." in ans.text


def test_epilepsy_genetic_quotes_no_questions(pipeline):
    ans = pipeline.answer("Is epilepsy genetic?")
    check_common(ans, "epilepsy")
    assert "?" not in ans.text
    assert "autosomal dominant" in ans.text or says_what_is_missing(ans.text)
    if "autosomal dominant" in ans.text:
        assert "For juvenile myoclonic epilepsy: When the condition is caused" in ans.text


FULL_INDEX = os.environ.get("MEDRAG_FULL_INDEX")  # read before the fixtures clear MEDRAG_* variables
ISSUE_QUESTIONS = [
    ("Is dementia inherited or acquired?", "dementia"),
    ("How long does the flu last?", "influenza"),
    ("Can arrhythmia come back after ablation?", "arrhythmia"),
    ("Is it safe to exercise during pregnancy?", "exercise during pregnancy"),
    ("my knee hurts when I climb stairs, what could it be?", "knee pain"),
    ("Is psoriasis contagious?", "psoriasis"),
    ("Is epilepsy genetic?", "epilepsy"),
]


@pytest.mark.slow
@pytest.mark.skipif(
    not FULL_INDEX, reason="extra check: set MEDRAG_FULL_INDEX to an index of ../shared/data/corpus.jsonl"
)
@pytest.mark.parametrize("question, topic", ISSUE_QUESTIONS)
def test_the_issue_examples_on_the_shared_corpus(question, topic, embedder):
    pipe = RAGPipeline(PipelineConfig(generator="extractive", index_dir=FULL_INDEX), embedder=embedder)
    ans = pipe.answer(question)
    check_common(ans, topic)
    assert "?" not in ans.text and "Objective:" not in ans.text and "Methods:" not in ans.text
