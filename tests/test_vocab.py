"""Tests for samadapter.vocab: parsing, builtin lists, errors, text classifier, synonym max."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from samadapter.errors import VocabularyError
from samadapter.vocab import (
    BUILTIN,
    TEMPLATES,
    Vocabulary,
    build_text_classifier,
    class_logits,
    load_builtin,
    parse_classes,
    read_classes_file,
    resolve_vocabulary,
)

# ------------------------------------------------------------------------------------------------
# parse_classes
# ------------------------------------------------------------------------------------------------


def test_parse_classes_synonyms_and_whitespace() -> None:
    v = parse_classes(" sofa | couch ,cat ")
    assert v.classes == (("sofa", "couch"), ("cat",))
    assert v.ids == (1, 2)
    assert v.name is None
    assert len(v) == 2
    assert v.names == ["sofa", "cat"]
    assert v.flat_names() == ["sofa", "couch", "cat"]
    assert v.name_to_class_index() == [0, 0, 1]


def test_parse_classes_keeps_case_and_drops_repeated_synonym() -> None:
    v = parse_classes("Traffic Light|traffic light|stoplight,dog")
    assert v.classes == (("Traffic Light", "stoplight"), ("dog",))


def test_to_dict_roundtrip_is_json() -> None:
    v = parse_classes("sofa|couch,cat")
    d = json.loads(json.dumps(v.to_dict()))
    assert d == {"name": None, "classes": [["sofa", "couch"], ["cat"]], "ids": [1, 2]}
    assert Vocabulary.from_dict(d) == v


def test_vocabulary_coerces_lists_and_checks_structure() -> None:
    v = Vocabulary(classes=[["a", "b"], ["c"]], ids=[3, 4])  # type: ignore[arg-type]
    assert v.classes == (("a", "b"), ("c",))
    assert v.ids == (3, 4)
    with pytest.raises(ValueError, match="2 classes but 1 ids"):
        Vocabulary(classes=(("a",), ("b",)), ids=(1,))
    with pytest.raises(ValueError, match="non-empty names"):
        Vocabulary(classes=(("a", ""),), ids=(1,))


def test_fingerprint_depends_on_names_order_and_templates() -> None:
    a = parse_classes("cat,dog")
    assert a.fingerprint() == parse_classes("cat, dog").fingerprint()
    assert len(a.fingerprint()) == 16
    assert a.fingerprint() != parse_classes("dog,cat").fingerprint()
    assert a.fingerprint() != parse_classes("cat|dog").fingerprint()
    assert a.fingerprint() != a.fingerprint(templates=("{}",))


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_parse_classes_empty(text: str) -> None:
    with pytest.raises(VocabularyError, match="no class names given") as e:
        parse_classes(text)
    assert e.value.hint and "--classes" in e.value.hint


@pytest.mark.parametrize(
    ("text", "where"),
    [("cat,,dog", "class 2"), ("cat,dog,", "class 3"), ("sofa|,cat", "class 1"), (",", "class 1")],
)
def test_parse_classes_empty_name(text: str, where: str) -> None:
    with pytest.raises(VocabularyError, match=f"empty class name in {where}"):
        parse_classes(text)


def test_parse_classes_duplicate_class() -> None:
    with pytest.raises(VocabularyError) as e:
        parse_classes("cat,dog, CAT ")
    assert str(e.value.message) == "--classes: duplicate class name 'CAT' (class 1 and class 3)"
    assert "'|'" in (e.value.hint or "")


def test_parse_classes_synonym_in_two_classes() -> None:
    with pytest.raises(VocabularyError) as e:
        parse_classes("sofa|couch,Couch")
    assert e.value.message == (
        "--classes: name 'Couch' belongs to two classes, 'sofa' (class 1) and 'Couch' (class 2)"
    )
    with pytest.raises(VocabularyError, match="'cat' belongs to two classes"):
        parse_classes("cat,kitty|cat")


def test_error_is_one_line() -> None:
    with pytest.raises(VocabularyError) as e:
        parse_classes("a,a")
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------
# read_classes_file
# ------------------------------------------------------------------------------------------------


def test_read_plain_file(tmp_path: Path) -> None:
    f = tmp_path / "classes.txt"
    f.write_text("# my classes\n\nsofa, couch\n  cat\n# end\ntraffic light,stoplight\n")
    v = read_classes_file(f)
    assert v.classes == (("sofa", "couch"), ("cat",), ("traffic light", "stoplight"))
    assert v.ids == (1, 2, 3)
    assert v.name is None


def test_read_id_file_keeps_ids_and_skips_placeholders(tmp_path: Path) -> None:
    f = tmp_path / "classes.txt"
    f.write_text("\ufeff0:invalid_class_id\n# comment\n1:wall,walls\n5:invalid_class_id\n7:sky\n\n")
    v = read_classes_file(str(f))
    assert v.classes == (("wall", "walls"), ("sky",))
    assert v.ids == (1, 7)


def test_read_id_file_zero_is_a_real_class(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_text("0:background\n1:cat\n")
    assert read_classes_file(f).ids == (0, 1)


def test_read_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(VocabularyError) as e:
        read_classes_file(path)
    assert e.value.message == f"classes file {path}: no such file"
    assert e.value.hint == "check the --classes-file path"


def test_read_directory(tmp_path: Path) -> None:
    with pytest.raises(VocabularyError, match="is a directory"):
        read_classes_file(tmp_path)


def test_read_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_bytes(b"caf\xe9\n")
    with pytest.raises(VocabularyError, match="not UTF-8"):
        read_classes_file(f)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("# only a comment\n\n", "no class names in the file"),
        ("cat\ndog,\n", "empty class name on line 2"),
        ("cat\n\ndog\ncat\n", "duplicate class name 'cat' (line 1 and line 4)"),
        ("sofa,couch\ncouch\n", "name 'couch' belongs to two classes, 'sofa' (line 1)"),
        ("1:cat\ndog\n", "line 2 lacks an 'ID:' prefix"),
        ("cat\n2:dog\n", "line 2 has an 'ID:' prefix"),
        ("1:cat\n1:dog\n", "class id 1 on line 2 was used on line 1"),
    ],
)
def test_read_file_errors(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "c.txt"
    f.write_text(content)
    with pytest.raises(VocabularyError) as e:
        read_classes_file(f)
    assert e.value.message.startswith(f"classes file {f}: ")
    assert message in e.value.message


# ------------------------------------------------------------------------------------------------
# builtins
# ------------------------------------------------------------------------------------------------

EXPECTED_COUNTS = {
    "ade150": 150,
    "ade847": 847,
    "coco-stuff": 171,
    "coco-panoptic": 133,
    "pc59": 59,
    "pc459": 459,
    "voc21": 21,
    "cityscapes": 19,
    "lvis": 1203,
}


def test_builtin_names() -> None:
    assert set(BUILTIN) == set(EXPECTED_COUNTS)
    for key, spec in BUILTIN.items():
        assert spec.name == key
        assert spec.filename.endswith(".txt")
        assert spec.description


@pytest.mark.parametrize(("name", "count"), sorted(EXPECTED_COUNTS.items()))
def test_every_builtin_loads(name: str, count: int) -> None:
    v = load_builtin(name)
    assert len(v) == count == BUILTIN[name].num_classes
    assert v.name == name
    assert len(set(v.ids)) == count
    assert "invalid_class_id" not in v.flat_names()
    assert all(n == n.strip() and n for n in v.flat_names())
    assert len(v.name_to_class_index()) == len(v.flat_names())


def test_ade150_contents() -> None:
    v = load_builtin("ade150")
    assert v.ids == tuple(range(1, 151))
    assert v.classes[0] == ("wall", "walls", "brick wall", "stone wall", "interior wall")
    assert v.names[1] == "building"
    # the official list repeats 'kitchen range' inside class 72; the repeat is dropped
    stove = v.classes[v.ids.index(72)]
    assert len(stove) == len({n.lower() for n in stove})


def test_builtin_ids_follow_the_files() -> None:
    assert load_builtin("cityscapes").ids == tuple(range(19))
    assert load_builtin("cityscapes").classes[0] == ("road", "railroad")
    voc = load_builtin("voc21")
    assert voc.ids == tuple(range(21))
    assert voc.names[:2] == ["background", "aeroplane"]
    coco = load_builtin("coco-stuff")
    assert coco.ids[0] == 1 and 12 not in coco.ids and coco.ids[-1] == 182
    assert load_builtin("coco-panoptic").ids[-1] == 200
    lvis = load_builtin("lvis")
    assert lvis.ids == tuple(range(1, 1204))
    assert lvis.classes[0] == ("aerosol can", "spray can")


def test_ade847_keeps_names_shared_between_classes() -> None:
    # the official ADE-847 list names 'dog' in several classes; it must load as is (847 classes)
    v = load_builtin("ade847")
    owners = {v.name_to_class_index()[i] for i, n in enumerate(v.flat_names()) if n == "dog"}
    assert len(owners) >= 2


def test_builtin_name_normalised_and_cached() -> None:
    assert load_builtin("COCO_Stuff") is load_builtin("coco-stuff")


def test_unknown_builtin() -> None:
    with pytest.raises(VocabularyError) as e:
        load_builtin("ade151")
    assert e.value.message.startswith("unknown vocabulary 'ade151'; choose one of: ade150, ")
    for key in BUILTIN:
        assert key in e.value.message


# ------------------------------------------------------------------------------------------------
# resolve_vocabulary
# ------------------------------------------------------------------------------------------------


def test_resolve_each_source(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_text("cat\ndog\n")
    assert resolve_vocabulary("cat,dog", None, None).names == ["cat", "dog"]
    assert resolve_vocabulary(None, f, None).names == ["cat", "dog"]
    assert resolve_vocabulary(None, str(f), None).names == ["cat", "dog"]
    assert resolve_vocabulary(None, None, "pc59").name == "pc59"


def test_resolve_none_given() -> None:
    with pytest.raises(VocabularyError) as e:
        resolve_vocabulary(None, None, None)
    assert e.value.message == "give one of --classes, --classes-file, --vocab"


def test_resolve_two_given() -> None:
    with pytest.raises(VocabularyError) as e:
        resolve_vocabulary("cat", None, "ade150")
    assert (
        e.value.message
        == "give one of --classes, --classes-file, --vocab, not --classes and --vocab"
    )


def test_resolve_empty_string_is_given_and_rejected() -> None:
    with pytest.raises(VocabularyError, match="no class names given"):
        resolve_vocabulary("", None, None)


# ------------------------------------------------------------------------------------------------
# templates and text classifier
# ------------------------------------------------------------------------------------------------


def test_templates() -> None:
    assert len(TEMPLATES) == 14
    assert TEMPLATES[0] == "a photo of a {}."
    assert TEMPLATES[1] == "This is a photo of a {}"
    assert TEMPLATES[-1] == "There is a large {} in the scene."
    assert all(t.count("{}") == 1 for t in TEMPLATES)
    assert len(set(TEMPLATES)) == 14


class FakeEncoder:
    """Maps each prompt to a fixed, hand-chosen vector; records the batches it was given."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        self.calls.append(list(prompts))
        return torch.tensor([self.table[p] for p in prompts], dtype=torch.float64)


def test_text_classifier_by_hand() -> None:
    templates = ("a {}", "the {}")
    vocab = parse_classes("cat|kitty,dog")
    enc = FakeEncoder(
        {
            "a cat": [3.0, 0.0],  # normalised: (1, 0)
            "the cat": [0.0, 0.5],  # normalised: (0, 1)
            "a kitty": [2.0, 0.0],
            "the kitty": [4.0, 0.0],
            "a dog": [0.0, -2.0],
            "the dog": [3.0, 4.0],  # normalised: (0.6, 0.8)
        }
    )
    emb = build_text_classifier(enc, vocab, templates=templates, batch_size=4)
    assert emb.shape == (3, 2)
    assert emb.dtype == torch.float32
    r = 1 / math.sqrt(2)
    # cat: mean of (1,0),(0,1) = (.5,.5) -> (r, r). Averaging raw vectors would give (3,.5)/2.
    # kitty: (1,0) twice -> (1,0). dog: mean of (0,-1),(.6,.8) = (.3,-.1) -> (3,-1)/sqrt(10).
    expected = torch.tensor([[r, r], [1.0, 0.0], [3 / math.sqrt(10), -1 / math.sqrt(10)]])
    torch.testing.assert_close(emb, expected)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    # 6 prompts in batches of 4, name-major order
    assert enc.calls == [["a cat", "the cat", "a kitty", "the kitty"], ["a dog", "the dog"]]


def test_text_classifier_default_templates_and_batching() -> None:
    vocab = parse_classes("cat,dog|puppy")
    seen: list[int] = []

    def encode(prompts: list[str]) -> torch.Tensor:
        seen.append(len(prompts))
        g = torch.Generator().manual_seed(len(prompts[0]))
        return torch.randn(len(prompts), 8, generator=g) * 5

    emb = build_text_classifier(encode, vocab)
    assert emb.shape == (3, 8)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    assert seen == [3 * 14]  # all prompts in one call with the default batch size
    seen.clear()
    build_text_classifier(encode, vocab, batch_size=10)
    assert seen == [10, 10, 10, 10, 2]


def test_text_classifier_prompts_are_the_templates() -> None:
    prompts: list[str] = []

    def encode(batch: list[str]) -> torch.Tensor:
        prompts.extend(batch)
        return torch.ones(len(batch), 4)

    build_text_classifier(encode, parse_classes("cat"))
    assert prompts == [t.format("cat") for t in TEMPLATES]
    assert prompts[0] == "a photo of a cat."


def test_text_classifier_no_grad() -> None:
    w = torch.randn(3, 4, requires_grad=True)

    def encode(batch: list[str]) -> torch.Tensor:
        return torch.ones(len(batch), 3) @ w

    assert not build_text_classifier(encode, parse_classes("a,b")).requires_grad


def test_text_classifier_errors() -> None:
    vocab = parse_classes("cat")

    def encode(batch: list[str]) -> torch.Tensor:
        return torch.ones(len(batch), 4)

    with pytest.raises(ValueError, match="at least one template"):
        build_text_classifier(encode, vocab, templates=())
    with pytest.raises(ValueError, match="has no"):
        build_text_classifier(encode, vocab, templates=("a photo",))
    with pytest.raises(ValueError, match="batch_size"):
        build_text_classifier(encode, vocab, batch_size=0)
    with pytest.raises(ValueError, match=r"returned shape \(4,\) for 14 prompts"):
        build_text_classifier(lambda b: torch.ones(4), vocab)


# ------------------------------------------------------------------------------------------------
# class_logits
# ------------------------------------------------------------------------------------------------


def test_class_logits_max_over_synonyms() -> None:
    name_logits = torch.tensor(
        [
            [1.0, 5.0, 2.0, -1.0, 0.5],
            [4.0, -3.0, 0.0, 7.0, 0.1],
        ]
    )
    # class 0: names 0, 1; class 1: name 2; class 2: names 3, 4
    out = class_logits(name_logits, [0, 0, 1, 2, 2], 3)
    torch.testing.assert_close(out, torch.tensor([[5.0, 2.0, 0.5], [4.0, 0.0, 7.0]]))


def test_class_logits_unordered_index_tensor_and_grad() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, -4.0]], requires_grad=True)
    out = class_logits(x, torch.tensor([1, 0, 1, 0]), 2)
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0]]))
    out.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 1.0, 1.0, 0.0]]))


def test_class_logits_identity_and_empty_and_dtype() -> None:
    x = torch.randn(4, 3, dtype=torch.float16)
    assert torch.equal(class_logits(x, [0, 1, 2], 3), x)
    out = class_logits(torch.zeros(0, 3), [0, 0, 1], 2)
    assert out.shape == (0, 2)
    y = class_logits(x, [1, 0, 1], 2)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y[:, 0], x[:, 1])
    torch.testing.assert_close(y[:, 1], torch.maximum(x[:, 0], x[:, 2]))


def test_class_logits_with_vocabulary_large() -> None:
    vocab = load_builtin("lvis")
    idx = vocab.name_to_class_index()
    x = torch.randn(5, len(idx))
    out = class_logits(x, idx, len(vocab))
    assert out.shape == (5, 1203)
    # reference: python loop
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(idx):
        groups.setdefault(k, []).append(i)
    ref = torch.stack([x[:, groups[k]].max(dim=1).values for k in range(len(vocab))], dim=1)
    torch.testing.assert_close(out, ref)


def test_class_logits_errors() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"must be \[Q, N\]"):
        class_logits(torch.zeros(3), [0, 1, 2], 3)
    with pytest.raises(ValueError, match="name_to_class has shape"):
        class_logits(x, [0, 1], 2)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        class_logits(x, [0, 1, 2], 2)
    with pytest.raises(ValueError, match="at least one name"):
        class_logits(x, [0, 0, 2], 3)


# ----------------------------------------------------------------------------- names are data


@pytest.mark.parametrize(
    "name, code",
    [
        ("ca\x01t", "U+0001"),
        ("a\tb", "U+0009"),
        ("x\ufffey", "U+FFFE"),
        ("caf\udce9", "U+DCE9"),
        ("q\ufdd0", "U+FDD0"),
        ("\x7f", "U+007F"),
    ],
)
def test_control_characters_are_refused_with_the_class_named(
    name: str, code: str, tmp_path: Path
) -> None:
    with pytest.raises(VocabularyError) as info:
        parse_classes(f"dog,{name}")
    message = str(info.value)
    assert f"(class 2) holds the control or non-character {code}" in message
    assert repr(name) in message and "\n" not in message
    path = tmp_path / "c.txt"
    path.write_text(f"dog\nsofa,{name}\n", encoding="utf-8", errors="surrogatepass")
    surrogate = code.startswith("U+DC")  # undecodable bytes: the file is not UTF-8 at all
    with pytest.raises(
        VocabularyError,
        match="not UTF-8 text"
        if surrogate
        else re.escape(f"line 2) holds the control or non-character {code}"),
    ):
        read_classes_file(path)
    with pytest.raises(VocabularyError, match=re.escape(code)):
        Vocabulary.from_dict({"classes": [["dog"], [name]]})  # e.g. a run.json's vocabulary


def test_ordinary_unicode_is_fine() -> None:
    vocab = parse_classes("chat noir,猫|ねこ,café,x[/],a/b,🐈‍⬛")  # ZWJ (a format char) is fine
    assert vocab.names == ["chat noir", "猫", "café", "x[/]", "a/b", "🐈‍⬛"]


@pytest.mark.parametrize("text", ["dog,unknown", "dog,Unknown", "dog|UNKNOWN,cat"])
def test_unknown_is_reserved_in_user_lists(text: str, tmp_path: Path) -> None:
    with pytest.raises(VocabularyError, match="is reserved: masks that none of your classes fit"):
        parse_classes(text)
    path = tmp_path / "c.txt"
    path.write_text(text.replace(",", "\n").replace("|", ","))
    with pytest.raises(VocabularyError, match="is reserved"):
        read_classes_file(path)
    assert parse_classes("unknown object,dog").names == ["unknown object", "dog"]


def test_keep_unknown_refused_for_a_benchmark_list_with_an_unknown_class() -> None:
    from samadapter.structures import UNKNOWN_NAME
    from samadapter.vocab import UNKNOWN_CLASS, check_keep_unknown

    assert UNKNOWN_CLASS == UNKNOWN_NAME
    pc459 = load_builtin("pc459")  # its class 431 is 'unknown'
    assert "unknown" in pc459.names
    check_keep_unknown(pc459, keep_unknown=False)
    with pytest.raises(VocabularyError, match="vocabulary pc459 has a class called 'unknown'"):
        check_keep_unknown(pc459, keep_unknown=True)
    check_keep_unknown(load_builtin("ade150"), keep_unknown=True)
