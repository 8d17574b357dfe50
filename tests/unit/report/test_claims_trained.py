"""Verdicts know what ran (issue 27): a claim about variants a preset did not train, or about the source's absolute
number under a changed setup, is 'untestable here' and says why; a smoke report says it checks the plumbing."""
from types import SimpleNamespace

from normlab.report.build import trained_here
from normlab.report.claims import Trained, evaluate_claims, parse_claims
from normlab.report.render import verdict_table

from test_claims import _groups


def _specs():
    return parse_claims([
        {"id": "deep", "text": "deep", "metric": "final_val_loss", "compare": "a_L32 < b_L32"},
        {"id": "shallow", "text": "shallow", "metric": "final_val_loss", "compare": "a < b"},
        {"id": "absolute", "text": "reaches 0.5", "metric": "final_val_loss", "compare": "a < 0.5"},
        {"id": "sign", "text": "below zero", "metric": "final_val_loss", "compare": "a < 0"},
        {"id": "limit", "text": "under a constant", "metric": "final_val_loss", "compare": "a < 0.5", "constant": True},
        {"id": "peer", "text": "a peer's number on its own corpus", "metric": "final_val_loss", "compare": "a < 0.5",
         "setup_free": ["data.source", "data.val_source"]}], "t")


def test_claims_on_untrained_variants_or_another_scale_are_untestable(tmp_path):
    groups = _groups(tmp_path, {"a": [2.0, 2.1, 1.9, 2.05, 2.02], "b": [2.3, 2.35, 2.2, 2.4, 2.28]})
    deep, shallow, absolute, sign, limit, peer = evaluate_claims(_specs(), groups, {},
                                                    Trained("preset smoke", ["train.steps=4", "data.source=names"]))
    assert deep.verdict == "untestable here" and deep.p_holm is None
    assert "untestable here: a_L32, b_L32 not in preset smoke" in deep.reasons
    assert shallow.verdict == "supported"                  # and Holm counts the tested claims only
    assert absolute.verdict == "untestable here" and "0.5" in absolute.untestable \
        and "preset smoke changes" in absolute.untestable and "train.steps=4" in absolute.untestable
    assert sign.verdict == "contradicted"                 # a sign needs no source scale: still tested
    assert limit.verdict == "contradicted"                # nor does a declared constant (float32's overflow)
    # an override of a setup_free key (the peer's corpus as a local file) leaves it testable; train.steps does not
    assert peer.verdict == "untestable here" and "train.steps=4" in peer.untestable \
        and "data.source" not in peer.untestable.split("belongs to")[1]
    _, _, _, _, _, peer = evaluate_claims(_specs(), groups, {}, Trained("overrides", ["data.source=text:x.txt"]))
    assert peer.verdict == "contradicted"
    scoped = Trained("overrides", ["a:data.source=text:x.txt", "a:data.val_source=text:y.txt"])   # VARIANT:key
    assert evaluate_claims(_specs(), groups, {}, scoped)[5].verdict == "contradicted"
    assert evaluate_claims(_specs(), groups, {}, Trained("overrides", ["a:train.steps=4"]))[5].verdict == \
        "untestable here"
    assert "untestable here: a_L32, b_L32 not in preset smoke" in verdict_table([deep])
    assert deep.as_dict()["untestable"] == "a_L32, b_L32 not in preset smoke"
    # as shipped (no preset, no overrides) the absolute claim is tested
    _, _, absolute, _, _, _ = evaluate_claims(_specs(), groups, {}, Trained())
    assert absolute.verdict == "contradicted"


def test_trained_here_names_what_the_preset_and_overrides_change():
    spec = SimpleNamespace(presets={"smoke": {"variants": ["a"], "train.steps": 4, "probes.every": 2,
                                              "axes": {"L4": {"model.n_layer": 2}}}})
    t = trained_here({"preset": "smoke", "overrides": ["train.lr=0.1", "train.device=cpu"]}, spec)
    assert t.label == "preset smoke and overrides train.lr=0.1 train.device=cpu"
    assert t.changed == ["train.steps=4", "model.n_layer=per variant", "train.lr=0.1"]   # not probes or device
    assert trained_here({"preset": None, "overrides": []}, spec) == Trained("", [])
