"""ravl.eval metric layer: pure-Python BLEU/ROUGE-L/CIDEr-D agree with pycocoevalcap on the same
tokens, the Java path (PTB tokenizer + METEOR) runs, Recall@K on matrices with known answers,
and reports write JSON/Markdown/PNG files."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ravl.errors import ConfigError, InputError, MissingDependencyError, RavlError
from ravl.eval import metrics as M
from ravl.eval import recall as R
from ravl.eval import report as REP
from ravl.eval import scoring as S

HAVE_JAVA = shutil.which("java") is not None
needs_java = pytest.mark.skipif(not HAVE_JAVA, reason="no `java` on PATH: the PTB tokenizer and METEOR need Java")

# 21 made-up images x 5 references, candidates of varied quality and length (img11: shorter than
# every reference, img12: much longer, img16: no n-gram overlap at all).
GTS = {
 "img01": ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean.",
           "A person on a surfboard riding a big wave.", "Surfer in a black wetsuit catching a wave.",
           "A man surfing on a wave in the sea."],
 "img02": ["Two dogs playing with a frisbee in the park.", "A pair of dogs chase a red frisbee on the grass.",
           "Dogs running across a grassy field after a frisbee.", "Two brown dogs play in a green field.",
           "A couple of dogs are playing fetch outside."],
 "img03": ["A plate of food with broccoli, rice and chicken.", "A white plate topped with rice and vegetables.",
           "Chicken and broccoli served over white rice.", "A healthy meal on a plate on a wooden table.",
           "A dinner plate holds rice, broccoli, and some meat."],
 "img04": ["A red double decker bus driving down a city street.", "A large red bus on a busy street.",
           "A double-decker bus stops at a bus stop in London.", "The bus is driving past tall buildings.",
           "A red bus travels down the road near people."],
 "img05": ["A cat sleeping on top of a laptop keyboard.", "A gray cat is lying on a computer.",
           "The kitten naps on the keys of an open laptop.", "A cat curled up on a laptop on a desk.",
           "A sleepy cat rests on someone's notebook computer."],
 "img06": ["A group of people standing around a kitchen.", "Several friends are cooking together in a kitchen.",
           "People gathered in a small kitchen preparing food.", "Four people chat while making dinner.",
           "A family stands near the stove and counter."],
 "img07": ["A giraffe standing next to a tall tree.", "A giraffe eating leaves from a tree in a zoo.",
           "A tall giraffe reaching up into the branches.", "One giraffe stands in a dirt enclosure by trees.",
           "The giraffe is feeding on a tree in the sun."],
 "img08": ["A baseball player swinging a bat at a ball.", "A batter hits the ball during a baseball game.",
           "A man in a uniform swings at a pitch.", "The catcher waits as the batter swings.",
           "A baseball game with a batter, catcher and umpire."],
 "img09": ["A bowl of fruit sitting on a table.", "Bananas, apples and oranges in a wooden bowl.",
           "A fruit bowl filled with fresh fruit.", "Assorted fruit piled in a bowl on the counter.",
           "A table with a large bowl of colorful fruit."],
 "img10": ["A woman holding an umbrella in the rain.", "A lady walks down the street with a black umbrella.",
           "A person with an umbrella on a rainy day.", "A woman stands under her umbrella near a shop.",
           "Someone carrying a pink umbrella while it rains."],
 "img11": ["An airplane flying through a blue sky.", "A large jet plane in the clear sky.",
           "A white passenger jet flying overhead.", "The airplane is taking off into the sky.",
           "A commercial airliner soaring high above the clouds."],
 "img12": ["A young boy brushing his teeth in the bathroom.", "A child with a toothbrush in front of a mirror.",
           "A little kid is brushing his teeth.", "The boy stands at the sink cleaning his teeth.",
           "A small boy holding a blue toothbrush."],
 "img13": ["A train traveling down tracks next to a forest.", "A long freight train on the railroad tracks.",
           "A green and yellow train passes through the countryside.",
           "The train is moving along the tracks near trees.",
           "A locomotive pulling cars past a wooded area."],
 "img14": ["A pizza with cheese and pepperoni on a pan.", "A large pepperoni pizza sitting on a table.",
           "A freshly baked pizza topped with meat and cheese.", "Someone is cutting a pizza into slices.",
           "A hot pizza just out of the oven."],
 "img15": ["A man sitting on a bench reading a newspaper.", "An old man reads the paper on a park bench.",
           "A person relaxing on a wooden bench with a newspaper.", "A gentleman sits alone outside reading.",
           "The man on the bench is holding a newspaper."],
 "img16": ["Two zebras standing in a grassy field.", "A pair of zebras grazing on the savanna.",
           "Zebras eating grass side by side.", "Two striped zebras in the wild.",
           "A couple of zebras stand together in the grass."],
 "img17": ["A living room with a couch and a television.", "A cozy living room with a brown sofa and a TV.",
           "A room with furniture, a fireplace and a television set.", "The living room has a large couch and a lamp.",
           "An empty living room with a flat screen TV."],
 "img18": ["A clock tower in the middle of a city.", "A tall tower with a clock on its side.",
           "A large clock on a brick building.", "The old clock tower stands against the sky.",
           "A church steeple with a clock near the top."],
 "img19": ["A skier going down a snowy slope.", "A person skiing down a mountain.",
           "A skier in a red jacket on the snow.", "Someone skis down a steep hill covered in snow.",
           "A man on skis racing down the slope."],
 "img20": ["A teddy bear sitting on a bed.", "A brown stuffed bear on top of white sheets.",
           "A child's toy bear resting on the pillow.", "A fluffy teddy bear placed on a bed.",
           "The stuffed animal sits on the bed near a window."],
 "img21": ["A horse.", "A brown horse standing in a field of tall grass near a wooden fence on a farm.",
           "Horse grazing.", "A horse in a pasture.", "A chestnut horse eats grass by the fence."],
}
RES = {
 "img01": "a man riding a wave on a surfboard", "img02": "two dogs playing with a frisbee in a field",
 "img03": "a plate of food with rice and broccoli", "img04": "a red bus driving down a street",
 "img05": "a cat laying on a laptop computer", "img06": "a group of people in a kitchen",
 "img07": "a giraffe standing next to a tree", "img08": "a baseball player swinging a bat",
 "img09": "a bowl of fruit on a table", "img10": "a woman walking with an umbrella",
 "img11": "a plane", "img12": "a boy brushing his teeth in front of a mirror in the bathroom at home",
 "img13": "a train on the tracks", "img14": "a pizza on a table",
 "img15": "a man sitting on a bench", "img16": "purple elephants dancing quietly",
 "img17": "a living room with a couch", "img18": "a clock tower",
 "img19": "a skier on a snowy hill", "img20": "a teddy bear on a bed",
 "img21": "a horse standing in a grassy field",
}
# Edge cases, scored together with the corpus above.
EDGE_GTS = {
    "e_repeat": ["the dog runs on the grass", "a dog is running", "the brown dog runs"],
    "e_exact": ["a cat on a mat", "a small cat sits on a mat", "the cat is on the mat"],
    "e_oneword": ["a bird", "bird on a branch", "a small bird sitting"],
    "e_empty": ["a car parked on the street", "a blue car", "a car near the curb"],
}
EDGE_RES = {"e_repeat": "the the the the the the the", "e_exact": "a cat on a mat",
            "e_oneword": "bird", "e_empty": ""}


def _tokenised(gts, res):
    refs = [[M.simple_tokenize(r) for r in v] for v in gts.values()]
    cands = [M.simple_tokenize(res[k]) for k in gts]
    return refs, cands


def _pycoco_all(refs, cands):
    """pycocoevalcap's own BLEU/ROUGE-L/CIDEr-D on already tokenised captions."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [c] for i, c in enumerate(cands)}
    bleu, bleu_imgs = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_imgs = Rouge().compute_score(gts, res)
    cider, cider_imgs = Cider().compute_score(gts, res)
    return {"bleu": (bleu, bleu_imgs), "rouge": (rouge, list(rouge_imgs)), "cider": (cider, list(cider_imgs))}


def _max_diff(refs, cands):
    ref = _pycoco_all(refs, cands)
    bleu, bleu_imgs = M.corpus_bleu(refs, cands)
    rouge, rouge_imgs = M.corpus_rouge_l(refs, cands)
    cider, cider_imgs = M.corpus_cider_d(refs, cands)
    diffs = [abs(a - b) for a, b in zip(bleu, ref["bleu"][0])]
    diffs += [abs(a - b) for k in range(4) for a, b in zip(bleu_imgs[k], ref["bleu"][1][k])]
    diffs += [abs(rouge - ref["rouge"][0]), abs(cider - ref["cider"][0])]
    diffs += [abs(a - b) for a, b in zip(rouge_imgs, ref["rouge"][1])]
    diffs += [abs(a - b) for a, b in zip(cider_imgs, ref["cider"][1])]
    assert len(bleu_imgs[3]) == len(rouge_imgs) == len(cider_imgs) == len(refs)
    return max(diffs)


@pytest.mark.parametrize("variant", ["corpus", "corpus+edges", "short-candidates", "two-images"])
def test_python_metrics_match_pycocoevalcap(variant):
    gts, res = dict(GTS), dict(RES)
    if variant == "corpus+edges":
        gts.update(EDGE_GTS)
        res.update(EDGE_RES)
    elif variant == "short-candidates":  # corpus-level brevity penalty kicks in
        res = {k: " ".join(v.split()[:3]) for k, v in res.items()}
    elif variant == "two-images":
        gts = {k: gts[k] for k in ("img01", "img16")}
    refs, cands = _tokenised(gts, res)
    assert _max_diff(refs, cands) < 1e-6


def test_score_captions_python_backend():
    scores = S.score_captions(GTS, RES, backend="python")
    assert scores.backend == "python" and scores.tokenizer == "simple"
    assert set(scores.corpus) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    assert set(scores.unavailable) == {"METEOR", "SPICE"}
    assert list(scores.per_image) == list(GTS)  # input order, original ids
    assert scores.per_image["img16"]["CIDEr-D"] == 0.0 and scores.per_image["img16"]["ROUGE-L"] == 0.0
    assert 1.0 < scores.corpus["CIDEr-D"] < 3.0 and 0.3 < scores.corpus["BLEU-4"] < 0.8
    assert scores.per_image_values("CIDEr-D") == [v["CIDEr-D"] for v in scores.per_image.values()]
    d = scores.to_dict()
    assert json.loads(json.dumps(d))["n_images"] == len(GTS)
    only = S.score_captions(GTS, RES, backend="python", metrics=["CIDEr-D"])
    assert set(only.corpus) == {"CIDEr-D"} and only.corpus["CIDEr-D"] == scores.corpus["CIDEr-D"]


def test_cider_of_one_image_is_zero():
    scores = S.score_captions({"x": GTS["img01"]}, {"x": GTS["img01"][0]}, backend="python")
    assert scores.corpus["CIDEr-D"] == 0.0  # IDF over a one-image corpus is log(1) - log(1)
    assert scores.corpus["BLEU-4"] > 0.9


def test_simple_tokenize_follows_ptb_conventions():
    assert M.simple_tokenize("A man's dog, running (fast) on the \"beach\".") == \
        "a man 's dog running -lrb- fast -rrb- on the beach"
    assert M.simple_tokenize("Two kids don't like the T-shirt; they can't!") == \
        "two kids do n't like the t-shirt they ca n't"
    assert M.simple_tokenize("At 5:30 p.m. in the U.S., 3.5 cats... wow?!") == \
        "at 5:30 p.m. in the u.s. 3.5 cats wow ?!"
    assert M.simple_tokenize("  ") == ""


def test_input_errors():
    with pytest.raises(InputError, match="same images"):
        S.score_captions({"a": ["x y"]}, {"b": "x y"}, backend="python")
    with pytest.raises(InputError, match="empty"):
        S.score_captions({"a": ["x y", "  "]}, {"a": "x y"}, backend="python")
    with pytest.raises(InputError, match="list of strings"):
        S.score_captions({"a": "x y"}, {"a": "x y"}, backend="python")
    with pytest.raises(InputError, match="empty"):
        S.score_captions({}, {}, backend="python")
    with pytest.raises(ConfigError, match="auto, java, python"):
        S.score_captions(GTS, RES, backend="perl")
    with pytest.raises(ConfigError, match="need Java"):
        S.score_captions(GTS, RES, backend="python", metrics=["METEOR"])
    with pytest.raises(ConfigError, match="unknown caption metric"):
        S.score_captions(GTS, RES, backend="python", metrics=["BLEU-9"])


def test_missing_java_is_a_clear_error(monkeypatch):
    from ravl.eval import cocoeval

    monkeypatch.setattr(cocoeval.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="backend='python'") as err:
        S.score_captions(GTS, RES, backend="java")
    assert "Java" in str(err.value)
    auto = S.score_captions(GTS, RES)  # 'auto' falls back to the pure-Python path
    assert auto.backend == "python" and "Java is not installed" in auto.unavailable["METEOR"]


# --- the Java path: one PTB run and one METEOR JVM for the whole module -------------------------
@pytest.fixture(scope="module")
def java_scores():
    if not HAVE_JAVA:
        pytest.skip("no `java` on PATH: the PTB tokenizer and METEOR need Java")
    stages = []
    scores = S.score_captions(GTS, RES, backend="java", progress=stages.append)
    return scores, stages


@needs_java
@pytest.mark.slow
def test_java_backend_gives_sane_values(java_scores):
    scores, stages = java_scores
    assert scores.backend == "java" and scores.tokenizer == "ptb"
    assert stages[:2] == ["tokenize", "BLEU"] and "METEOR" in stages
    c = scores.corpus
    assert 0.15 < c["METEOR"] < 0.6 and 0.3 < c["BLEU-4"] < 0.8 and 0.5 < c["ROUGE-L"] < 0.9
    assert 1.0 < c["CIDEr-D"] < 3.0
    meteor = {k: v["METEOR"] for k, v in scores.per_image.items()}
    assert meteor["img16"] < 0.05 < meteor["img01"] <= 1.0  # no overlap vs a near-copy
    if "SPICE" in scores.unavailable:
        assert "jars" in scores.unavailable["SPICE"] or "SPICE" in scores.unavailable["SPICE"]
    else:
        assert 0.0 <= c["SPICE"] <= 1.0


@needs_java
@pytest.mark.slow
def test_python_path_matches_java_backend_on_ptb_tokens(java_scores):
    from ravl.eval.cocoeval import ptb_tokenize

    scores, _ = java_scores
    flat = ptb_tokenize([r for v in GTS.values() for r in v] + list(RES.values()))
    it = iter(flat)
    refs = [[next(it) for _ in v] for v in GTS.values()]
    cands = list(it)
    assert _max_diff(refs, cands) < 1e-6
    py = S.score_captions(dict(zip(GTS, refs)), dict(zip(GTS, cands)), backend="python", tokenize=False)
    for name, value in py.corpus.items():
        assert abs(value - scores.corpus[name]) < 1e-6, name
    for key in GTS:
        assert abs(py.per_image[key]["CIDEr-D"] - scores.per_image[key]["CIDEr-D"]) < 1e-6
    # On plain English captions the pure-Python tokenizer gives exactly the PTB tokens.
    simple = [M.simple_tokenize(c) for c in [r for v in GTS.values() for r in v] + list(RES.values())]
    assert simple == flat


@needs_java
@pytest.mark.slow
def test_ptb_wrapper_matches_pycocoevalcap_tokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from ravl.eval.cocoeval import ptb_tokenize

    sample = {k: GTS[k] for k in ("img01", "img05", "img17")}
    sample["odd"] = ["A (red) car's door {x} [y] -- isn't it?", "“Quoted” text — with dashes…"]
    theirs = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in sample.items()})
    ours = ptb_tokenize([c for v in sample.values() for c in v])
    assert ours == [c for v in theirs.values() for c in v]


# --- recall -------------------------------------------------------------------------------------
def test_recall_on_a_matrix_with_known_answers():
    # 3 images; captions 0,1 -> image 0; 2,3 -> image 1; 4 -> image 2; image 3 has no caption.
    owner = [0, 0, 1, 1, 2]
    sim = np.array([
        [0.9, 0.1, 0.2, 0.0],  # caption 0: own image first          -> rank 1
        [0.3, 0.8, 0.1, 0.0],  # caption 1: own image second         -> rank 2
        [0.1, 0.2, 0.3, 0.9],  # caption 2: image 1 is third         -> rank 3
        [0.0, 0.5, 0.1, 0.2],  # caption 3: own image first          -> rank 1
        [0.7, 0.6, 0.5, 0.4],  # caption 4: own image (2) third      -> rank 3
    ])
    scores = R.retrieval_scores(sim, owner, ks=(1, 2, 3))
    t2i = scores.text_to_image
    assert t2i.ranks.tolist() == [1, 2, 3, 1, 3]
    assert t2i.recall == {1: 0.4, 2: 0.6, 3: 1.0}
    assert t2i.mean_rank == 2.0 and t2i.median_rank == 2.0
    # image -> text (columns): image 0: best own caption (0, 0.9) is first -> rank 1;
    # image 1: own captions 2 (0.2), 3 (0.5); captions 1 (0.8) and 4 (0.6) beat both -> rank 3;
    # image 2: caption 4 (0.5) vs 0.2, 0.1, 0.3, 0.1 -> rank 1; image 3 has no caption -> skipped.
    i2t = scores.image_to_text
    assert i2t.ranks.tolist() == [1, 3, 1] and i2t.n_skipped == 1 and i2t.n_candidates == 5
    assert i2t.recall[2] == pytest.approx(2 / 3) and i2t.recall[3] == 1.0
    assert t2i.curve(4) == [0.4, 0.6, 1.0, 1.0]
    d = scores.to_dict()
    assert d["text_to_image"]["recall"] == {"R@1": 0.4, "R@2": 0.6, "R@3": 1.0}


def test_ties_are_deterministic():
    sim = np.zeros((4, 4))  # a constant scorer
    owner = [0, 1, 2, 3]
    pess = R.retrieval_scores(sim, owner, ks=(1,), ties="pessimistic")
    opt = R.retrieval_scores(sim, owner, ks=(1,), ties="optimistic")
    idx = R.retrieval_scores(sim, owner, ks=(1,), ties="index")
    assert pess.text_to_image.ranks.tolist() == [4, 4, 4, 4] and pess.text_to_image.recall[1] == 0.0
    assert opt.text_to_image.ranks.tolist() == [1, 1, 1, 1]
    assert idx.text_to_image.ranks.tolist() == [1, 2, 3, 4]  # stable order by candidate index
    with pytest.raises(ConfigError, match="pessimistic"):
        R.retrieval_scores(sim, owner, ties="random")


def _brute_force_ranks(sim, relevant):
    ranks = []
    for row, rel in zip(sim, relevant):
        order = np.argsort(-row, kind="stable")
        ranks.append(1 + min(int(np.where(order == j)[0][0]) for j in rel))
    return ranks


@pytest.mark.parametrize("integer_scores", [False, True])
def test_recall_matches_brute_force(integer_scores):
    rng = np.random.default_rng(0)
    n_img, per = 30, 3
    owner = np.repeat(np.arange(n_img), per)
    sim = rng.integers(0, 4, (n_img * per, n_img)).astype(float) if integer_scores \
        else rng.standard_normal((n_img * per, n_img))
    scores = R.retrieval_scores(sim, owner, ks=(1, 5, 10), ties="index")
    assert scores.text_to_image.ranks.tolist() == _brute_force_ranks(sim, [[j] for j in owner])
    by_image = [list(np.where(owner == j)[0]) for j in range(n_img)]
    assert scores.image_to_text.ranks.tolist() == _brute_force_ranks(sim.T, by_image)
    for direction in (scores.text_to_image, scores.image_to_text):
        curve = direction.curve(10)
        assert curve == sorted(curve) and curve[4] == direction.recall[5]


def test_ranked_id_lists():
    rankings = {"q1": ["a", "b", "c"], "q2": ["c", "b", "a"], "q3": ["b", "c"], "q4": ["a"]}
    relevant = {"q1": "a", "q2": {"a", "b"}, "q3": "a", "q4": []}
    d = R.ranking_scores(rankings, relevant, ks=(1, 2))
    assert d.ranks.tolist() == [1, 2, 3] and d.n_not_found == 1 and d.n_skipped == 1
    assert d.recall == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}
    with pytest.raises(InputError, match="relevance"):
        R.ranking_scores({"q": ["a"]}, {}, ks=(1,))


def test_recall_input_errors():
    with pytest.raises(InputError, match="one per caption"):
        R.retrieval_scores(np.zeros((3, 2)), [0, 1])
    with pytest.raises(InputError, match="outside"):
        R.retrieval_scores(np.zeros((2, 2)), [0, 2])
    with pytest.raises(InputError, match="NaN"):
        R.retrieval_scores(np.full((2, 2), np.nan), [0, 1])
    with pytest.raises(ConfigError, match="positive"):
        R.retrieval_scores(np.zeros((2, 2)), [0, 1], ks=(0,))


# --- reports ------------------------------------------------------------------------------------
def _report(config_k=10, shift=0.0):
    rng = np.random.default_rng(1)
    sim = rng.standard_normal((60, 20)) + shift * np.repeat(np.eye(20), 3, axis=0)
    retrieval = R.retrieval_scores(sim, np.repeat(np.arange(20), 3), ks=(1, 5, 10))
    captions = S.score_captions(GTS, RES, backend="python")
    config = {"encoder": "default", "generator": "retrieval:top1", "k": config_k, "dataset_hash": "abc123"}
    return REP.build_report(config=config, retrieval=retrieval, captions=captions, curve_max_k=15)


@pytest.mark.slow
def test_report_writes_json_markdown_and_pngs(tmp_path):
    from PIL import Image

    report = _report()
    paths = REP.write_report(tmp_path / "out", report)
    assert set(paths) == {"json", "markdown", "recall_plot", "cider_plot"}
    data = REP.load_report(paths["json"])
    assert data["config"]["encoder"] == "default" and data["ravl_version"]
    assert len(data["retrieval"]["text_to_image"]["recall_curve"]) == 15
    assert data["captioning"]["per_image"]["img16"]["CIDEr-D"] == 0.0
    md = paths["markdown"].read_text()
    assert "| text → image | 60 |" in md and "CIDEr-D" in md and "METEOR unavailable" in md
    for key in ("recall_plot", "cider_plot"):
        with Image.open(paths[key]) as img:
            assert img.format == "PNG" and img.size[0] > 100
            img.verify()
    with pytest.raises(InputError, match="not readable JSON"):
        (tmp_path / "bad.json").write_text("{")
        REP.load_report(tmp_path / "bad.json")


def test_compare_reports():
    a, b = _report(config_k=10), _report(config_k=5, shift=3.0)
    rows = REP.compare_reports(a, b)
    by_name = {r.name: r for r in rows}
    assert by_name["config.k"].changed and by_name["config.k"].delta == -5
    assert not by_name["config.encoder"].changed
    r1 = by_name["text_to_image.R@1"]
    assert r1.changed and r1.delta == pytest.approx(r1.b - r1.a) and r1.delta > 0
    assert by_name["captioning.CIDEr-D"].delta == 0.0
    text = REP.render_comparison(rows, labels=("base", "new"))
    assert "text_to_image.R@1" in text and "base" in text.splitlines()[0]
    changed = REP.render_comparison(rows, only_changed=True)
    assert "config.encoder" not in changed and "config.k" in changed


def test_eval_package_import_is_light():
    code = ("import sys, ravl.eval, ravl.eval.metrics, ravl.eval.scoring, ravl.eval.recall, ravl.eval.report;"
            "print(any(m in sys.modules for m in ('matplotlib', 'pycocoevalcap', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    import ravl.eval

    assert ravl.eval.score_captions is S.score_captions
    assert issubclass(MissingDependencyError, RavlError)
