"""Every graph variant against PyTorch on tiny configs: GQA and MHA, tied and untied, with and without SubLN."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bitzero.export.convert import pack_model
from bitzero.export.graph import TABLE_BITS, build_graph, check_variant, variants_for
from bitzero.export.layerwise import graph_reference
from bitzero.export.packing import quantize_table
from bitzero.kernels import LIBRARY_ENV, library_path, register
from bitzero.model import BitZeroLM
from bitzero.serving.bundle import LOGITS_TO_KEEP
from tests.export.conftest import END_TO_END, tiny_student, tiny_teacher

CONFIGS = {
    "gqa-tied": {},
    "gqa-untied": {"tie_embeddings": False},
    "mha-subnorm": {"n_kv_head": 4, "sub_norm": True},
    "gqa1-untied-subnorm": {"n_kv_head": 1, "tie_embeddings": False, "sub_norm": True},
}
IDS = np.random.default_rng(0).integers(0, 300, size=(1, 24))


def onnx_logits(graph: onnx.ModelProto, model: BitZeroLM, ids: np.ndarray = IDS) -> np.ndarray:
    options = ort.SessionOptions()
    register(options)  # the ternary and int4 graphs' kernels, where built
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    c = model.config
    empty = np.zeros((1, c.n_kv_head, 0, c.head_dim), np.float32)
    pasts = {i.name: empty for i in session.get_inputs() if i.name.startswith("past_")}
    return session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids), **pasts})[0]


def rel_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@torch.no_grad()
def torch_logits(model: BitZeroLM, ids: np.ndarray = IDS) -> np.ndarray:
    return model(torch.from_numpy(ids))[0].numpy()


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize(("variant", "tolerance"), [("exact", 1e-5), ("nbits", END_TO_END["nbits"])])
def test_student_graph_matches_pytorch(config: str, variant: str, tolerance: float) -> None:
    model = tiny_student(seed=3, **CONFIGS[config])
    got = onnx_logits(build_graph(pack_model(model), variant), model)
    expected = torch_logits(model)
    assert rel_error(got, expected) <= tolerance
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= (1.0 if variant == "exact" else 0.7)  # near-ties in random logits


@pytest.mark.parametrize("config", CONFIGS)
def test_teacher_fp32_graph_matches_pytorch(config: str) -> None:
    model = tiny_teacher(seed=4, **CONFIGS[config])
    assert rel_error(onnx_logits(build_graph(pack_model(model), "fp32"), model), torch_logits(model)) <= 1e-5


@pytest.mark.parametrize("config", CONFIGS)
def test_teacher_int4_graph_is_pytorch_with_its_4bit_weights(config: str) -> None:
    """The int4 graph computes the model whose linears are the dequantized 4-bit blocks and whose
    embedding (and lm_head) tables are the dequantized 8-bit blocks; what is left is lm_head's int8 activations."""
    model = tiny_teacher(seed=5, **CONFIGS[config])
    graph = build_graph(pack_model(model), "int4")
    four_bit = graph_reference(model, "int4")
    got = onnx_logits(graph, model)
    assert rel_error(got, torch_logits(four_bit)) <= 0.03
    assert rel_error(got, torch_logits(model)) <= END_TO_END["int4"]


@pytest.mark.parametrize("variant", ["fp32", "int4"])
def test_logits_to_keep_gives_the_last_positions_logits(variant: str) -> None:
    """Generation asks for the last position only (lm_head over the rest was a third of a prefill);
    0, the default a caller gets by leaving the input out, keeps every position (the NLL's need)."""
    model = tiny_teacher(seed=6)
    graph = build_graph(pack_model(model), variant)
    options = ort.SessionOptions()
    register(options)  # the int4 graph's kernel, where built
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    empty = np.zeros((1, model.config.n_kv_head, 0, model.config.head_dim), np.float32)
    feeds = {"input_ids": IDS, "attention_mask": np.ones_like(IDS),
             **{i.name: empty for i in session.get_inputs() if i.name.startswith("past_")}}
    every = session.run(["logits"], feeds)[0]
    assert every.shape[1] == IDS.shape[1]
    for keep in (0, 1, 3):
        kept = session.run(["logits"], {**feeds, LOGITS_TO_KEEP: np.array([keep])})[0]
        assert kept.shape[1] == (keep or IDS.shape[1])
        # The same floats here; 1e-3 leaves room for a kernel that computes one row apart (MatMulNBits'
        # int8 path on other CPUs) and is far below what a wrong position is off by (2.3 here).
        np.testing.assert_allclose(kept, every[:, -kept.shape[1]:], rtol=0, atol=1e-5 if variant == "fp32" else 1e-3)


def test_cache_layout_is_grouped_query() -> None:
    model = tiny_teacher(n_kv_head=1)
    graph = build_graph(pack_model(model), "fp32")
    past = next(i for i in graph.graph.input if i.name == "past_key.0")
    dims = [d.dim_value or d.dim_param for d in past.type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "past", model.config.head_dim]


def test_tables_are_8_bit_in_compact_variants_and_a_tied_one_is_stored_once() -> None:
    def initializers(model: BitZeroLM, variant: str, table_bits: int | None = None) -> dict[str, onnx.TensorProto]:
        return {t.name: t for t in build_graph(pack_model(model), variant, table_bits).graph.initializer}

    assert initializers(tiny_student(), "nbits")["embed.weight.q8"].data_type == onnx.TensorProto.UINT8
    int4 = initializers(tiny_teacher(tie_embeddings=False), "int4")
    assert "embed.weight.q8" in int4 and "lm_head.weight.q8" in int4
    assert initializers(tiny_teacher(tie_embeddings=False), "int4", 0)["lm_head.weight"].data_type == onnx.TensorProto.FLOAT16
    for model, variant in ((tiny_student(), "nbits"), (tiny_student(), "exact"), (tiny_teacher(), "int4"),
                           (tiny_teacher(), "fp32")):
        names = initializers(model, variant)
        assert sum(name.startswith("embed.weight") for name in names) == 1 + (variant in TABLE_BITS), variant
        assert not any(name.startswith("lm_head") for name in names), variant


@pytest.mark.skipif(library_path() is None, reason="the kernel library is not built")
def test_the_ternary_graph_stores_its_table_once_as_int8_rows_and_computes_them() -> None:
    student = tiny_student(seed=4)
    graph = build_graph(pack_model(student), "ternary")
    names = {t.name: t for t in graph.graph.initializer}
    assert names["embed.weight.int8"].data_type == onnx.TensorProto.INT8
    assert sum(name.startswith("embed.weight") for name in names) == 2 and not any(n.startswith("lm_head") for n in names)
    got = onnx_logits(graph, student)
    unrounded = rel_error(got, torch_logits(student))
    assert rel_error(got, torch_logits(graph_reference(student, "ternary"))) <= unrounded / 3  # the rows it stores, not others


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_tables_compute_the_dequantized_model(bits: int) -> None:
    model = tiny_teacher(seed=6, tie_embeddings=False)
    reference = tiny_teacher(seed=6, tie_embeddings=False)
    with torch.no_grad():
        for table in (reference.embed, reference.lm_head):
            assert table is not None
            table.weight.copy_(torch.from_numpy(quantize_table(table.weight.numpy(), bits).dense()))
    got = onnx_logits(build_graph(pack_model(model), "fp32", table_bits=bits), model)
    assert rel_error(got, torch_logits(reference)) <= 0.03  # lm_head's int8 activations


def test_wrong_variant_for_the_model_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="full-precision model exports as one of"):
        build_graph(pack_model(tiny_teacher()), "nbits")
    with pytest.raises(ValueError, match="ternary model exports as one of"):
        build_graph(pack_model(tiny_student()), "int4")


def test_the_ternary_variant_is_exported_only_where_the_kernel_is_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    student = tiny_student().config.to_dict()
    monkeypatch.setenv(LIBRARY_ENV, str(tmp_path / "not-built.so"))
    assert variants_for(student) == ("nbits", "exact")
    check_variant(student, "ternary")  # still a student variant: a bundle built elsewhere may hold it
    (tmp_path / "broken.so").write_bytes(b"not a library")
    monkeypatch.setenv(LIBRARY_ENV, str(tmp_path / "broken.so"))
    assert variants_for(student) == ("nbits", "exact")  # built but not loadable here
    monkeypatch.delenv(LIBRARY_ENV)
    if library_path() is not None:
        assert variants_for(student) == ("ternary", "nbits", "exact")
    ops = [node.op_type for node in build_graph(pack_model(tiny_student()), "ternary").graph.node]
    assert ops.count("TernaryMatMul") == 4 * student["n_layer"]  # qkv, o, gate-up, down (SwiGLU inside)
    assert not {"Round", "Clip", "Concat", "Split", "Sigmoid"} & set(ops)  # quantization, critical rows, SwiGLU
    assert ops.count("Gather") == 2 and ops.count("TableMatMul") == 1  # the int8 table: embedding row and scale; lm_head
