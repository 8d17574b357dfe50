"""normlab inspect: the forward probes on Hugging Face causal LMs, offline.

Tiny random models of three architectures (GPT-2, GPT-NeoX, Llama) and a GPT-2 with a planted sink and
massive activation (hfmodels.planted_gpt2: the answer is set by hand) are saved with
save_pretrained(safe_serialization=True) and inspected end to end through the CLI: the detectors fire on
the planted one and stay quiet on the random ones. Bad inputs get one `error:` line and exit 2, and write
nothing. Nothing here reaches the network.
"""
import json
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

import hfmodels  # noqa: E402
from oneline import invoke, refused  # noqa: E402

from normlab.inspect.run import uniform_baseline  # noqa: E402

ARCHS = ("gpt2", "gpt_neox", "llama", "opt")   # opt: the generic taps
FAST = ("--n-seqs", "6")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {arch: hfmodels.random_model(arch, root / arch) for arch in ARCHS}
    out["planted"] = hfmodels.planted_gpt2(root / "planted")
    return out


def _inspect(model, out, *args) -> dict:
    r = invoke("inspect", model, "--out", out, *FAST, *args)
    assert r.exit_code == 0, (r.output, r.stderr, r.exception)
    assert "report:" in r.output
    for name in ("inspect.json", "report.md", "report.html", "inspect_sinks.png", "inspect_massive.png"):
        assert (out / name).is_file(), name
    return json.loads((out / "inspect.json").read_text())


def test_uniform_baseline_is_h_t_over_t():
    assert uniform_baseline(1) == 1.0
    assert uniform_baseline(8) == pytest.approx(0.3397, abs=1e-4)     # issue 25: 0.34 at T = 8
    assert uniform_baseline(64) == pytest.approx(0.0740, abs=1e-3)    # 0.074 at T = 64


@pytest.mark.parametrize("arch", ARCHS)
def test_random_models_are_quiet(models, arch, tmp_path):
    r = _inspect(models[arch], tmp_path / "out")
    d = r["detections"]
    assert r["model_type"] == arch and r["n_seqs"] == 6 and r["seq_len"] == 64 and r["source"] == "local"
    assert len(r["layers"]) == hfmodels.LAYERS and r["weights_sha256"].keys() == {"model.safetensors"}
    assert not d["sinks"] and d["sink_rate"] == 0
    assert d["sink_mass_mean"] == pytest.approx(d["uniform_baseline"], abs=0.01)   # random init: uniform heads
    assert not d["massive"] and d["top_over_median_max"] < 100
    assert not d["residual_sink_layers"] and d["channel_ratio_max"] < 10
    assert d["value_drain_min"] is not None and 0.3 < d["value_drain_min"] < 3       # v exposed in all four
    assert all(0.99 < row["entropy_over_max"] <= 1.0 + 1e-9 for row in r["layers"])


def test_planted_sink_and_massive_activation_are_detected(models, tmp_path):
    r = _inspect(models["planted"], tmp_path / "out")
    d, (l0, l1) = r["detections"], r["layers"]
    assert d["sinks"] and l1["sink_rate"] == 1.0 and l0["sink_rate"] == 0.0
    assert l1["sink_mass"] > 0.99 and l1["sink_mass"] > 10 * d["uniform_baseline"]
    assert d["massive"] and d["massive_layers"] == ["layer0", "layer1"]
    for row in (l0, l1):
        assert row["top_over_median"] > 1e4 and row["top_abs_h"] == pytest.approx(hfmodels.MASSIVE, rel=0.05)
        assert (row["top_position"], row["top_channel"]) == (0, hfmodels.MASSIVE_CHANNEL)
        assert row["residual_sink"] and row["top_channels"][0] == hfmodels.MASSIVE_CHANNEL
    assert l1["value_drain"] < 0.5 < l0["value_drain"]                       # layer 1's v ignores the channel
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| attention sinks (Gu et al. 2024) | yes |" in md and "H_T/T = 0.074" in md


def test_text_string_and_file(models, tmp_path):
    text = tmp_path / "prose.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    r = _inspect(models["gpt2"], tmp_path / "a", "--text", text, "--seq-len", "16")
    assert r["text"] == f"file {text}" and r["n_seqs"] == 6 and r["seq_len"] == 16
    assert r["detections"]["uniform_baseline"] == pytest.approx(uniform_baseline(16))
    r = invoke("inspect", models["gpt2"], "--out", tmp_path / "b", *FAST, "--text", "a short passage " * 10,
               "--seq-len", "32")
    assert r.exit_code == 0 and "5 windows x 32 tokens (fewer than --n-seqs 6: the text has 160 tokens)" in r.output
    r = json.loads((tmp_path / "b" / "inspect.json").read_text())
    assert r["n_seqs"] == 5 and r["n_seqs_asked"] == 6 and r["text"].startswith("the string")  # 160 bytes: 5 windows


def test_a_short_window_says_uniform_heads_pass(models, tmp_path):
    r = _inspect(models["gpt2"], tmp_path / "out", "--seq-len", "8")
    assert r["detections"]["uniform_head_passes_threshold"] and not r["detections"]["sinks"]
    assert "a uniform head passes the threshold" in (tmp_path / "out" / "report.md").read_text()


def _pickle_only(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hfmodels.config("gpt2").to_dict()))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    return folder


def _encoder(tmp_path):
    from transformers import T5Config

    folder = tmp_path / "t5"
    T5Config(d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=32, vocab_size=256).save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def _bert(tmp_path):
    from transformers import BertConfig

    folder = tmp_path / "bert"
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
               vocab_size=256).save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"")
    return folder


BAD = {
    "missing path": (lambda t, m: [t / "nope"], "no such directory"),
    "a file": (lambda t, m: [m["gpt2"] / "config.json"], "is a file"),
    "no config": (lambda t, m: [t], "no config.json"),
    "pickle only": (lambda t, m: [_pickle_only(t)], "pickle"),
    "no weights": (lambda t, m: [(t / "c").mkdir() or hfmodels.config("gpt2").save_pretrained(t / "c") or t / "c"],
                   "no *.safetensors"),
    "not a causal LM": (lambda t, m: [_encoder(t)], "not a causal"),
    "offline hub miss": (lambda t, m: ["normlab-tests/no-such-model", "--offline"], "no-such-model"),
    "seq-len 1": (lambda t, m: [m["gpt2"], "--seq-len", "1"], "--seq-len"),
    "seq-len 9000": (lambda t, m: [m["gpt2"], "--seq-len", "9000"], "--seq-len"),
    "seq-len over positions": (lambda t, m: [m["gpt2"], "--seq-len", "129"], "128 positions"),
    "seq-len not a number": (lambda t, m: [m["gpt2"], "--seq-len", "6x"], "--seq-len"),
    "n-seqs 0": (lambda t, m: [m["gpt2"], "--n-seqs", "0"], "--n-seqs"),
    "n-seqs 10001": (lambda t, m: [m["gpt2"], "--n-seqs", "10001"], "--n-seqs"),
    "n-seqs negative": (lambda t, m: [m["gpt2"], "--n-seqs", "-3"], "--n-seqs"),
    "text file missing": (lambda t, m: [m["gpt2"], "--text", t / "absent.txt"], "no such file"),
    "text file empty": (lambda t, m: [m["gpt2"], "--text", (t / "e.txt").write_text(" \n") and t / "e.txt"], "empty"),
    "text a directory": (lambda t, m: [m["gpt2"], "--text", t], "directory"),
    "text shorter than seq-len": (lambda t, m: [m["gpt2"], "--text", "too short"], "fewer than --seq-len 64"),
    "out a file": (lambda t, m: [m["gpt2"], "--out", m["gpt2"] / "config.json"], "is a file"),
    "out under a file": (lambda t, m: [m["gpt2"], "--out", m["gpt2"] / "config.json" / "x"], "a file"),
    "an encoder (BERT)": (lambda t, m: [_bert(t)], "not a causal"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(models, tmp_path, case):
    make, words = BAD[case]
    args = make(tmp_path, models)
    out = [] if "--out" in args else ["--out", tmp_path / "report"]
    line = refused(invoke("inspect", *args, *out, env={"HF_HUB_OFFLINE": "1"}), words)
    assert line.startswith("error: ")
    assert not (tmp_path / "report").exists()          # nothing written


def test_default_text_is_the_names_corpus(models, tmp_path):
    r = _inspect(models["llama"], tmp_path / "out", "--n-seqs", "2")
    assert "names" in r["text"] and r["text_tokens"] >= 2 * 64 and r["n_seqs"] == 2


def test_import_normlab_does_not_import_transformers():
    code = "import sys, normlab, normlab.cli, normlab.inspect; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_a_hub_id_loads_from_the_cache_offline(models, tmp_path):
    """A hub id already in the Hugging Face cache (laid out as huggingface_hub writes it) loads with --offline,
    in a fresh process whose HF_HUB_CACHE is that cache; the commit it resolved is recorded."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--normlab-tests--tiny-gpt2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(models["gpt2"], repo / "snapshots" / commit)
    env = {"HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home")}
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "normlab", "inspect", "normlab-tests/tiny-gpt2", "--offline",
                        "--n-seqs", "2", "--out", str(out)], capture_output=True, text=True,
                       env={**__import__("os").environ, **env})
    assert r.returncode == 0, r.stderr
    result = json.loads((out / "inspect.json").read_text())
    assert result["source"] == "hub" and result["where"] == "normlab-tests/tiny-gpt2" and result["n_seqs"] == 2
    assert result["revision"] == commit and result["weights_sha256"].keys() == {"model.safetensors"}


@pytest.mark.parametrize("arch", ARCHS)
def test_taps_are_the_models_own_tensors(models, arch, monkeypatch):
    """The block outputs are the model's hidden states (output_hidden_states; the last one before the final norm),
    and the v the value drain reads is the `value` each family's eager attention receives."""
    import importlib

    import torch

    from normlab.inspect.hooks import Tapper, taps_for
    from normlab.inspect.load import load

    loaded = load(str(models[arch]))
    module = importlib.import_module(f"transformers.models.{arch}.modeling_{arch}")
    seen, real = [], module.eager_attention_forward

    def spy(mod, query, key, value, *args, **kwargs):
        seen.append(value.detach().transpose(1, 2))            # B, heads, T, D -> B, T, heads, D
        return real(mod, query, key, value, *args, **kwargs)

    monkeypatch.setattr(module, "eager_attention_forward", spy)
    x = torch.randint(0, hfmodels.VOCAB, (3, 16), generator=torch.Generator().manual_seed(0))
    taps = taps_for(loaded.model, loaded.config)
    with torch.no_grad(), Tapper(loaded.model, loaded.config, taps) as tap:
        out = loaded.model(input_ids=x, output_hidden_states=True, output_attentions=True)
    outputs, values = tap.outputs(), tap.values()
    assert len(seen) == len(values) == hfmodels.LAYERS
    for i in range(hfmodels.LAYERS):
        torch.testing.assert_close(values[i], seen[i])
        assert outputs[f"blocks.{i}"].shape == (3, 16, hfmodels.D)
        assert {f"blocks.{i}.attn"} | ({f"blocks.{i}.mlp"} if taps.mlp else set()) <= outputs.keys()
    assert bool(taps.mlp) == (arch != "opt")                   # OPT's blocks have fc1 / fc2, no MLP module
    for i in range(hfmodels.LAYERS - 1):
        torch.testing.assert_close(outputs[f"blocks.{i}"], out.hidden_states[i + 1])


def test_a_long_text_tokenizes_a_prefix_with_the_same_windows(models):
    from normlab.inspect.load import load
    from normlab.inspect.text import Text, windows

    tok = load(str(models["gpt2"])).tokenizer
    long = Text("the quick brown fox jumps over the lazy dog. " * 2000, "test")
    x, n = windows(tok, long, 16, 4)
    full = tok(long.text, add_special_tokens=False)["input_ids"]
    assert x.tolist() == [full[i * 16:(i + 1) * 16] for i in range(4)] and n < len(full)
