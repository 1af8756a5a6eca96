"""Primus YAML resolution (extends, env placeholders, experiments) and the Megatron mapping."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from runtime.config import ConfigError, JobConfig
from runtime.primus import (
    PresetTree,
    PrimusConfigError,
    UnreadPreset,
    deep_merge,
    expand_env,
    load_runtime_sections,
    load_yaml_with_extends,
    load_yaml_without_extends,
    match_flavor,
    megatron_to_runtime,
    resolve_experiment,
    unread_note,
)
from scaffolder.cli import app


def write(path: Path, text: str) -> Path:
    """Write dedented YAML ``text`` to ``path`` (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------ extends


def test_extends_three_levels_file_wins_last(tmp_path: Path) -> None:
    write(tmp_path / "root.yaml", "a: root\nb: root\nc: root\nonly_root: 1\n")
    write(tmp_path / "mid.yaml", "extends: root.yaml\nb: mid\nc: mid\nonly_mid: 2\n")
    leaf = write(tmp_path / "leaf.yaml", "extends:\n  - mid.yaml\nc: leaf\n")
    assert load_yaml_with_extends(leaf, environ={}) == {
        "a": "root",
        "b": "mid",
        "c": "leaf",
        "only_root": 1,
        "only_mid": 2,
    }


def test_later_parent_overrides_earlier(tmp_path: Path) -> None:
    write(tmp_path / "first.yaml", "x: first\ny: first\n")
    write(tmp_path / "second.yaml", "x: second\nz: second\n")
    child = write(tmp_path / "child.yaml", "extends: [first.yaml, second.yaml]\n")
    assert load_yaml_with_extends(child, environ={}) == {
        "x": "second",
        "y": "first",
        "z": "second",
    }
    swapped = write(tmp_path / "swapped.yaml", "extends: [second.yaml, first.yaml]\n")
    assert load_yaml_with_extends(swapped, environ={})["x"] == "first"


def test_dicts_deep_merge_lists_replace(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "opt: {lr: 1, betas: [0.9, 0.99], name: adam}\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nopt: {lr: 2, betas: [0.8]}\n")
    assert load_yaml_with_extends(child, environ={}) == {
        "opt": {"lr": 2, "betas": [0.8], "name": "adam"}
    }


def test_parents_resolve_relative_to_the_naming_file(tmp_path: Path) -> None:
    write(tmp_path / "shared" / "base.yaml", "from_base: true\n")
    write(tmp_path / "shared" / "mid.yaml", "extends: base.yaml\nfrom_mid: true\n")
    leaf = write(tmp_path / "models" / "leaf.yaml", "extends: ../shared/mid.yaml\n")
    assert load_yaml_with_extends(leaf, environ={}) == {"from_base": True, "from_mid": True}


def test_diamond_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "d.yaml", "v: d\n")
    write(tmp_path / "b.yaml", "extends: d.yaml\nv: b\n")
    write(tmp_path / "c.yaml", "extends: d.yaml\n")
    top = write(tmp_path / "a.yaml", "extends: [b.yaml, c.yaml]\n")
    # c re-applies d after b, so d's value wins over b's.
    assert load_yaml_with_extends(top, environ={}) == {"v": "d"}


def test_cycle_is_reported_on_one_line(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: [c.yaml]\n")
    write(tmp_path / "c.yaml", "extends: a.yaml\n")
    with pytest.raises(PrimusConfigError) as error:
        load_yaml_with_extends(tmp_path / "a.yaml", environ={})
    message = one_line(error)
    assert message.startswith("extends cycle: ")
    assert [Path(p).name for p in message.removeprefix("extends cycle: ").split(" -> ")] == [
        "a.yaml",
        "b.yaml",
        "c.yaml",
        "a.yaml",
    ]


def test_self_extension_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "self.yaml", "extends: self.yaml\n")
    with pytest.raises(PrimusConfigError, match="extends cycle"):
        load_yaml_with_extends(tmp_path / "self.yaml", environ={})


def test_missing_parent_names_file_and_parent(tmp_path: Path) -> None:
    child = write(tmp_path / "child.yaml", "extends: [nowhere.yaml]\n")
    with pytest.raises(PrimusConfigError) as error:
        load_yaml_with_extends(child, environ={})
    message = one_line(error)
    assert "child.yaml" in message
    assert "extends 'nowhere.yaml'" in message
    assert "does not exist" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PrimusConfigError) as error:
        load_yaml_with_extends(tmp_path / "absent.yaml", environ={})
    assert one_line(error).startswith("config file not found: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1, 2\n", "invalid YAML"),
        ("- 1\n- 2\n", "expected a mapping at the top level, got list"),
        ("extends: {a: 1}\n", "'extends' must be a file name or a list of file names"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(PrimusConfigError) as error:
        load_yaml_with_extends(path, environ={})
    assert expected in one_line(error)


def test_deep_merge_leaves_inputs_alone() -> None:
    base = {"a": {"b": 1, "c": [1]}}
    override = {"a": {"b": 2}}
    merged = deep_merge(base, override)
    merged["a"]["c"].append(2)
    assert merged == {"a": {"b": 2, "c": [1, 2]}}
    assert base == {"a": {"b": 1, "c": [1]}}


# ------------------------------------------------------------------------ env placeholders


def test_expand_env_uses_environment_then_default() -> None:
    env = {"TEAM": "infra"}
    assert expand_env("${TEAM:amd}", env) == "infra"
    assert expand_env("${USER_X:root}", env) == "root"
    assert expand_env("${EMPTY_DEFAULT:}", env) == ""
    assert expand_env("${TEAM}", env) == "infra"


def test_expand_env_without_default_requires_the_variable() -> None:
    with pytest.raises(PrimusConfigError) as error:
        expand_env({"a": ["${NOT_SET_ANYWHERE}"]}, {})
    assert "NOT_SET_ANYWHERE is not set" in one_line(error)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${N:42}", {}, 42),
        ("${N:-3}", {}, -3),
        ("${N}", {"N": "7"}, 7),
        ("${LR:3.0e-4}", {}, 3.0e-4),
        ("${LR:1e-5}", {}, 1e-5),
        ("${LR:.5}", {}, 0.5),
        ("${FLAG:true}", {}, True),
        ("${FLAG:False}", {}, False),
        ("${FLAG}", {"FLAG": "TRUE"}, True),
        ("${PATH_X:./output}", {}, "./output"),
        ("${V:1.2.3}", {}, "1.2.3"),
        ("${V:12abc}", {}, "12abc"),
    ],
)
def test_whole_placeholder_is_typed(text: str, env: dict[str, str], expected: object) -> None:
    value = expand_env(text, env)
    assert value == expected
    assert type(value) is type(expected)


def test_embedded_placeholders_stay_strings() -> None:
    env = {"ROOT": "/data", "N": "8"}
    assert expand_env("${ROOT}/run-${N}", env) == "/data/run-8"
    assert expand_env("n=${N:1}", env) == "n=8"
    assert expand_env("$HOME and ${ not a placeholder", env) == "$HOME and ${ not a placeholder"


def test_expand_env_walks_containers_and_keeps_other_values() -> None:
    env = {"A": "1"}
    value = {"list": ["${A}", {"deep": "${B:x}"}], "n": 3, "none": None, "${A}": "key kept"}
    assert expand_env(value, env) == {
        "list": [1, {"deep": "x"}],
        "n": 3,
        "none": None,
        "${A}": "key kept",
    }


def test_placeholders_expand_in_every_file_of_a_chain(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "iters: ${ITERS:10}\nname: ${NAME:base}\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nname: ${NAME:child}\n")
    assert load_yaml_with_extends(child, environ={"ITERS": "20"}) == {
        "iters": 20,
        "name": "child",
    }


# ----------------------------------------------------------------------------- experiments


def primus_tree(root: Path) -> Path:
    """A fake Primus checkout under ``root``: module and model presets that all set ``who`` and
    ``layer``, in Primus's layout (``primus/configs/{modules,models}/megatron/``)."""
    checkout = root / "primus_checkout"
    modules = checkout / "primus" / "configs" / "modules"
    models = checkout / "primus" / "configs" / "models" / "megatron"
    write(modules / "module_base.yaml", "from_module_base: true\n")
    write(
        modules / "megatron" / "trainer_base.yaml",
        "extends: ../module_base.yaml\nwho: trainer_base\nfrom_base: true\n",
    )
    write(
        modules / "megatron" / "pre_trainer.yaml",
        "extends: trainer_base.yaml\nwho: module\nlayer: module\nfrom_module: true\n",
    )
    write(models / "language_model.yaml", "who: language_model\nfrom_lm: true\n")
    write(
        models / "tiny.yaml",
        "extends: [language_model.yaml]\nwho: model\nlayer: model\nnested: {a: 1, b: 1}\n",
    )
    return checkout


def make_experiment(
    root: Path, overrides: str = "    overrides: {}\n", folder: Path | None = None
) -> Path:
    """An experiment in ``folder`` (default ``root/experiments/``) naming the presets of
    :func:`primus_tree`."""
    experiment = textwrap.dedent(
        """
        work_group: ${TEAM:amd}
        user_name: ${USER_NAME:root}
        exp_name: ${EXP:tiny-pretrain}
        workspace: ${WORKSPACE:./output}
        modules:
          pre_trainer:
            framework: megatron
            config: pre_trainer.yaml
            model: tiny
        """
    )
    return write((folder or root / "experiments") / "exp.yaml", experiment + overrides)


def primus_env(root: Path, **environ: str) -> dict[str, str]:
    """``environ`` with PRIMUS_PATH naming the fake checkout under ``root`` (built if absent)."""
    checkout = root / "primus_checkout"
    if not checkout.is_dir():
        primus_tree(root)
    return {"PRIMUS_PATH": str(checkout), **environ}


def test_experiment_precedence_is_primus_module_over_model_then_overrides(tmp_path: Path) -> None:
    """As Primus merges: a key both presets set keeps the module preset's value (the model
    preset's is recorded as shadowed); the overrides win over both."""
    exp = make_experiment(tmp_path, "    overrides:\n      who: override\n      nested: {b: 2}\n")
    resolved = resolve_experiment(exp, environ=primus_env(tmp_path))
    module = resolved.modules["pre_trainer"]
    assert module.params["who"] == "override"
    assert module.params["layer"] == "module"
    assert module.shadowed == ("layer", "who")
    notes = megatron_to_runtime(module)["architecture_notes"]
    assert notes[0].startswith("layer: the model preset's value is shadowed by the module preset")
    assert module.params["nested"] == {"a": 1, "b": 2}
    for flag in ("from_module_base", "from_base", "from_module", "from_lm"):
        assert module.params[flag] is True
    assert module.module_preset["who"] == "module"
    assert module.model_preset["who"] == "model"
    assert module.overrides == {"who": "override", "nested": {"b": 2}}
    configs = tmp_path / "primus_checkout" / "primus" / "configs"
    assert module.config_file == configs / "modules" / "megatron" / "pre_trainer.yaml"
    assert module.model_file == configs / "models" / "megatron" / "tiny.yaml"
    assert resolved.presets == PresetTree(primus_path=tmp_path / "primus_checkout")
    assert resolved.presets.configs == configs
    assert (module.unread, resolved.unread, unread_note(resolved)) == ((), (), None)


def test_experiment_metadata_and_env(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    resolved = resolve_experiment(exp, environ=primus_env(tmp_path, TEAM="research", EXP="42"))
    assert (resolved.work_group, resolved.user_name) == ("research", "root")
    assert resolved.exp_name == "42"
    assert resolved.exp_root == Path("./output") / "research" / "root" / "42"


def test_presets_beside_the_experiment_are_never_read(tmp_path: Path) -> None:
    """Primus reads presets only from its configs tree: files named like them next to the
    experiment, or in modules/ and models/ folders there, change nothing."""
    exp = make_experiment(tmp_path)
    for where in ("", "modules/", "models/", "modules/megatron/", "models/megatron/"):
        write(exp.parent / where / "pre_trainer.yaml", "who: beside\nbeside: true\n")
        write(exp.parent / where / "tiny.yaml", "who: beside\nbeside: true\n")
    module = resolve_experiment(exp, environ=primus_env(tmp_path)).modules["pre_trainer"]
    assert "beside" not in module.params
    assert module.params["who"] == "module"
    # Without a Primus checkout, model presets come only from the package holding the experiment.
    with pytest.raises(PrimusConfigError) as error:
        resolve_experiment(exp, environ={})
    assert one_line(error) == (
        f"{exp}: modules.pre_trainer: model preset 'tiny': without PRIMUS_PATH the runtime reads "
        f"model presets only from the generated package holding the experiment, and {exp} is in "
        "none; run the experiment from its package, or set PRIMUS_PATH to a Primus checkout whose "
        "primus/configs/models/megatron/ holds it"
    )


def test_missing_model_preset_names_the_folder_and_the_copy_step(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    exp.write_text(exp.read_text().replace("model: tiny", "model: huge.yaml"))
    with pytest.raises(PrimusConfigError) as error:
        resolve_experiment(exp, environ=primus_env(tmp_path))
    message = one_line(error)
    folder = tmp_path / "primus_checkout" / "primus" / "configs" / "models" / "megatron"
    assert f"model preset 'huge.yaml' not found in {folder}/;" in message
    assert "copy the package's megatron/models/huge.yaml into primus/configs/models/megatron/" in (
        message
    )


def test_missing_module_preset_names_the_folder(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    exp.write_text(exp.read_text().replace("config: pre_trainer.yaml", "config: sft"))
    with pytest.raises(PrimusConfigError) as error:
        resolve_experiment(exp, environ=primus_env(tmp_path))
    folder = tmp_path / "primus_checkout" / "primus" / "configs" / "modules" / "megatron"
    assert f"module preset 'sft' not found in {folder}/; name a module preset" in one_line(error)


@pytest.mark.parametrize("name", ["../tiny.yaml", "/abs/tiny.yaml", "megatron/../../x"])
def test_preset_names_outside_the_tree_are_refused(tmp_path: Path, name: str) -> None:
    exp = make_experiment(tmp_path)
    exp.write_text(exp.read_text().replace("model: tiny", f"model: {name}"))
    for environ in (primus_env(tmp_path), {}):
        with pytest.raises(PrimusConfigError) as error:
            resolve_experiment(exp, environ=environ)
        assert f"model preset '{name}' must name a file inside primus/configs/models/megatron/" in (
            one_line(error)
        )


def test_primus_path_that_is_no_checkout(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path)
    with pytest.raises(PrimusConfigError) as error:
        resolve_experiment(exp, environ={"PRIMUS_PATH": str(tmp_path / "nowhere")})
    message = one_line(error)
    assert message.startswith(f"PRIMUS_PATH={tmp_path / 'nowhere'} is not a Primus checkout")
    assert message.endswith(
        "point it at the folder that holds primus/configs/, or unset it to read the model preset "
        "from the experiment's package"
    )


def make_package(root: Path, overrides: str = "    overrides: {}\n") -> Path:
    """A generated package's shape under ``root/pkg``: ``megatron/models/tiny.yaml`` extending
    Primus's ``language_model.yaml``, and its experiment ``megatron/exp.yaml``."""
    package = root / "pkg"
    write(package / "__init__.py", "")
    write(
        package / "megatron" / "models" / "tiny.yaml",
        "extends: [language_model.yaml]\nwho: model\nlayer: model\nnested: {a: 1, b: 1}\n",
    )
    return make_experiment(root, overrides, folder=package / "megatron")


UNREAD_TINY = (
    UnreadPreset("primus/configs/modules/megatron/pre_trainer.yaml", "module preset"),
    UnreadPreset("primus/configs/models/megatron/language_model.yaml", "extended by tiny.yaml"),
)


def test_without_primus_path_no_primus_file_is_read(tmp_path: Path) -> None:
    """Without PRIMUS_PATH: the package's model preset (its own keys: what it extends is
    Primus's), then the overrides; the Primus presets it names are reported, not read."""
    exp = make_package(tmp_path, "    overrides:\n      who: override\n      nested: {b: 2}\n")
    # Files named like Primus's, in the package (an older package's copies) or in a Primus
    # checkout PRIMUS_PATH does not name, are never read.
    write(exp.parent / "models" / "language_model.yaml", "from_lm: true\n")
    write(exp.parent / "modules" / "pre_trainer.yaml", "from_module: true\n")
    primus_tree(tmp_path)
    resolved = resolve_experiment(exp, environ={})
    module = resolved.modules["pre_trainer"]
    assert module.params == {"who": "override", "layer": "model", "nested": {"a": 1, "b": 2}}
    assert (module.config_file, module.module_preset, module.shadowed) == (None, {}, ())
    assert module.model_file == tmp_path / "pkg" / "megatron" / "models" / "tiny.yaml"
    assert module.model_preset == {"who": "model", "layer": "model", "nested": {"a": 1, "b": 1}}
    assert module.unread == resolved.unread == UNREAD_TINY
    assert resolved.presets == PresetTree(package_dir=tmp_path / "pkg")
    assert unread_note(resolved) == (
        "PRIMUS_PATH is not set, so these Primus presets were not read: "
        "primus/configs/modules/megatron/pre_trainer.yaml (module preset), "
        "primus/configs/models/megatron/language_model.yaml (extended by tiny.yaml); trainer "
        "values come from the experiment's overrides and the runtime's defaults (set PRIMUS_PATH "
        "to a Primus checkout to read what Primus reads)"
    )
    # With PRIMUS_PATH the same experiment reads that checkout's presets instead.
    write(primus_tree(tmp_path) / "primus" / "configs" / "models" / "megatron" / "tiny.yaml", "")
    module = resolve_experiment(exp, environ=primus_env(tmp_path)).modules["pre_trainer"]
    assert (module.params["layer"], module.params["from_module"], module.unread) == (
        "module",
        True,
        (),
    )


def test_unread_presets_are_named_where_primus_would_read_them(tmp_path: Path) -> None:
    """A model preset in a subfolder extends relative to it in Primus's tree; two modules naming
    the same presets report them once."""
    exp = make_package(tmp_path)
    write(
        exp.parent / "models" / "sub" / "small.yaml",
        "extends: [../language_model.yaml, extra.yaml]\nsmall: true\n",
    )
    text = exp.read_text().replace("model: tiny", "model: sub/small")
    second = "  post_trainer: {framework: megatron, config: pre_trainer, model: tiny}\n"
    exp.write_text(text.replace("modules:\n", "modules:\n" + second))
    resolved = resolve_experiment(exp, environ={})
    assert resolved.modules["pre_trainer"].params == {"small": True}
    assert [str(preset) for preset in resolved.modules["pre_trainer"].unread] == [
        "primus/configs/modules/megatron/pre_trainer.yaml (module preset)",
        "primus/configs/models/megatron/language_model.yaml (extended by small.yaml)",
        "primus/configs/models/megatron/sub/extra.yaml (extended by small.yaml)",
    ]
    post, pre = resolved.modules["post_trainer"].unread, resolved.modules["pre_trainer"].unread
    assert post == UNREAD_TINY
    assert resolved.unread == (*post, *pre[1:])


def test_without_primus_path_a_module_without_model_is_its_overrides(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path, "    overrides: {lr: 0.5}\n")
    exp.write_text(exp.read_text().replace("    model: tiny\n", ""))
    resolved = resolve_experiment(exp, environ={})
    assert resolved.modules["pre_trainer"].params == {"lr": 0.5}
    assert resolved.unread == UNREAD_TINY[:1]
    assert resolved.presets == PresetTree()


def test_without_primus_path_a_missing_model_preset_names_the_package_folder(
    tmp_path: Path,
) -> None:
    exp = make_package(tmp_path)
    exp.write_text(exp.read_text().replace("model: tiny", "model: huge.yaml"))
    with pytest.raises(PrimusConfigError) as error:
        resolve_experiment(exp, environ={})
    folder = tmp_path / "pkg" / "megatron" / "models"
    assert one_line(error).endswith(
        f"model preset 'huge.yaml' not found in {folder}/; put it there, or set PRIMUS_PATH to a "
        "Primus checkout whose primus/configs/models/megatron/ holds it"
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("workspace: ${WORKSPACE:./output}\n", ""), "missing workspace"),
        (("model: tiny", "model: tiny\n    override: {}"), "unknown key(s) override"),
        (("framework: megatron", "framework: 3"), "framework must be a non-empty string"),
        (("modules:", "other:"), "'modules' must be a non-empty mapping"),
    ],
)
def test_experiment_errors(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    exp = make_experiment(tmp_path)
    text = exp.read_text()
    assert edit[0] in text
    exp.write_text(text.replace(*edit))
    with pytest.raises(PrimusConfigError) as error:
        resolve_experiment(exp, environ=primus_env(tmp_path))
    assert expected in one_line(error)


# ------------------------------------------------------------------------ Megatron mapping

LLAMA_PARAMS = {
    "num_layers": 22,
    "hidden_size": 2048,
    "ffn_hidden_size": 5632,
    "num_attention_heads": 32,
    "group_query_attention": True,
    "num_query_groups": 4,
    "kv_channels": 64,
    "max_position_embeddings": 2048,
    "vocab_size": 32000,
    "layernorm_epsilon": 1e-5,
    "normalization": "RMSNorm",
    "swiglu": True,
    "position_embedding_type": "rope",
    "rotary_base": 10000,
    "rotary_percent": 1.0,
    "rotary_interleaved": False,
    "use_rope_scaling": False,
    "untie_embeddings_and_output_weights": True,
    "add_qkv_bias": False,
    "add_bias_linear": False,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "init_method_std": 0.02,
    "seq_length": 2048,
    "micro_batch_size": 2,
    "global_batch_size": 16,
    "train_iters": 50,
    "seed": 1234,
    "clip_grad": 1.0,
    "optimizer": "adam",
    "lr": 3.0e-4,
    "min_lr": 3.0e-5,
    "lr_decay_style": "cosine",
    "lr_warmup_iters": 5,
    "weight_decay": 0.1,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "adam_eps": 1e-8,
    "tensor_model_parallel_size": 2,
    "pipeline_model_parallel_size": 4,
    "context_parallel_size": 1,
    "mock_data": True,
    "bf16": True,
    "fp16": False,
    "save": "ckpt",
    "save_interval": 25,
    "recompute_granularity": "full",
    "log_interval": 1,
}


def test_mapping_sections_and_model_args() -> None:
    mapped = megatron_to_runtime(LLAMA_PARAMS)
    assert mapped["sections"] == {
        "training": {
            "seq_len": 2048,
            "local_batch_size": 2,
            "global_batch_size": 16,
            "steps": 50,
            "seed": 1234,
            "max_norm": 1.0,
            "dataset": "mock",
            "mixed_precision_param": "bfloat16",
        },
        "optimizer": {
            "name": "AdamW",
            "lr": 3.0e-4,
            "weight_decay": 0.1,
            "beta1": 0.9,
            "beta2": 0.95,
            "eps": 1e-8,
        },
        "lr_scheduler": {
            "warmup_steps": 5,
            "decay_type": "cosine",
            "min_lr_factor": pytest.approx(0.1),
        },
        "parallelism": {
            "tensor_parallel_degree": 2,
            "pipeline_parallel_degree": 4,
            "pipeline_parallel_schedule": "1F1B",
        },
        "checkpoint": {"enable": True, "folder": "ckpt", "interval": 25},
        "activation_checkpoint": {"mode": "full"},
        "metrics": {"log_freq": 1},
        "moe": {},
    }
    assert mapped["model_args"] == {
        "vocab_size": 32000,
        "dim": 2048,
        "n_layers": 22,
        "n_heads": 32,
        "n_kv_heads": 4,
        "head_dim": 64,
        "ffn_dim": 5632,
        "max_seq_len": 2048,
        "norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "rope_type": "default",
    }
    assert mapped["architecture"]["num_query_groups"] == 4
    assert "seq_length" not in mapped["architecture"]
    assert mapped["unsupported"] == []
    assert mapped["architecture_notes"] == []


def test_mapping_only_maps_what_is_set() -> None:
    mapped = megatron_to_runtime({"lr": 1e-3, "train_iters": None, "mock_data": False})
    assert mapped["sections"]["optimizer"] == {"lr": 1e-3}
    assert mapped["sections"]["training"] == {}
    assert mapped["model_args"] == {}
    assert mapped["architecture"] == {}


def test_mapping_without_gqa_uses_all_heads_and_derives_head_dim() -> None:
    params = {"hidden_size": 512, "num_attention_heads": 8, "group_query_attention": False}
    params["num_query_groups"] = 2  # ignored by Megatron without group_query_attention
    args = megatron_to_runtime(params)["model_args"]
    assert (args["n_kv_heads"], args["head_dim"]) == (8, 64)


@pytest.mark.parametrize(
    ("rope", "expected"),
    [
        # Megatron's GPT model reads no interpolation factor: plain rope, and a note.
        ({"rotary_seq_len_interpolation_factor": 4}, {"rope_type": "default"}),
        (
            # Nor the llama3 factor: Megatron's fixed 8.0 stands, and a note.
            {"use_rope_scaling": True, "rope_scaling_factor": 32.0},
            {
                "rope_type": "llama3",
                "rope_factor": 8.0,
                "rope_low_freq_factor": 1.0,
                "rope_high_freq_factor": 4.0,
                "rope_original_max_seq_len": 8192,
            },
        ),
    ],
)
def test_mapping_rope_scaling(rope: dict, expected: dict) -> None:
    mapped = megatron_to_runtime({**LLAMA_PARAMS, **rope})
    args = mapped["model_args"]
    assert {key: args[key] for key in expected} == expected
    [ignored] = [key for key in rope if key != "use_rope_scaling"]
    assert mapped["architecture_notes"] == [
        f"{ignored} reaches no Megatron GPT model (Primus passes it to none); ignored"
    ]


def test_mapping_schedules() -> None:
    constant = megatron_to_runtime({"lr_decay_style": "constant"})["sections"]["lr_scheduler"]
    assert constant == {"decay_ratio": 0.0}
    wsd = megatron_to_runtime(
        {
            "lr_decay_style": "WSD",
            "lr_wsd_decay_style": "linear",
            "lr_wsd_decay_iters": 20,
            "train_iters": 100,
            "lr_warmup_fraction": 0.1,
            "lr_warmup_iters": 3,
        }
    )["sections"]["lr_scheduler"]
    assert wsd == {"warmup_steps": 10, "decay_type": "linear", "decay_ratio": 0.2}
    interleaved = megatron_to_runtime(
        {"pipeline_model_parallel_size": 2, "num_layers_per_virtual_pipeline_stage": 2}
    )
    assert interleaved["sections"]["parallelism"]["pipeline_parallel_schedule"] == (
        "Interleaved1F1B"
    )
    off = megatron_to_runtime({"save": None, "recompute_granularity": None})["sections"]
    assert off["checkpoint"] == {"enable": False}
    assert off["activation_checkpoint"] == {"mode": "none"}


def test_mapping_notes_what_the_runtime_cannot_honour() -> None:
    params = {
        **LLAMA_PARAMS,
        "normalization": "LayerNorm",
        "hidden_dropout": 0.1,
        "add_qkv_bias": True,
        "norm_epsilon": 1e-6,
        "lr_decay_style": "inverse-square-root",
        "mock_data": False,
        "data_path": ["1.0", "/data/corpus_text_document"],
        "load": "/megatron/ckpt",
        "context_parallel_size": 2,
    }
    mapped = megatron_to_runtime(params)
    assert [note.split(":")[0] for note in mapped["unsupported"]] == [
        "data_path",
        "lr_decay_style",
        "load",
        "context_parallel_size",
    ]
    notes = " | ".join(mapped["architecture_notes"])
    for fragment in (
        "normalization: 'LayerNorm' is not supported",
        "hidden_dropout: 0.1 is not supported",
        "add_qkv_bias without add_bias_linear",
        "norm_epsilon is the flag name of layernorm_epsilon, not an argument: Primus drops it",
    ):
        assert fragment in notes
    assert len(mapped["architecture_notes"]) == 4
    assert mapped["model_args"]["norm_eps"] == 1e-5


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"train_iters": "50"}, "train_iters: expected int, got '50'"),
        ({"micro_batch_size": True}, "micro_batch_size: expected int, got True"),
        ({"lr": "3e-4"}, "lr: expected float, got '3e-4'"),
        ({"bf16": True, "fp16": True}, "bf16 and fp16 are both true"),
        ({"recompute_granularity": "block"}, "recompute_granularity: expected full"),
        (
            {"num_attention_heads": 8, "group_query_attention": True},
            "num_query_groups is unset",
        ),
    ],
)
def test_mapping_rejects_bad_values(params: dict, expected: str) -> None:
    with pytest.raises(PrimusConfigError) as error:
        megatron_to_runtime(params)
    assert expected in one_line(error)


def test_match_flavor_picks_the_flavor_the_preset_describes() -> None:
    small = SimpleNamespace(dim=64, n_layers=2, n_heads=4, norm_eps=1e-5)
    full = SimpleNamespace(dim=2048, n_layers=22, n_heads=32, norm_eps=1e-5)
    flavors = {"debugmodel": small, "1.1B": full}
    assert match_flavor(flavors, {"dim": 2048, "n_layers": 22, "vocab_size": 7}) == "1.1B"
    assert match_flavor(flavors, {"dim": 64}) == "debugmodel"
    with pytest.raises(PrimusConfigError) as error:
        match_flavor(flavors, {"dim": 2048, "n_layers": 24})
    assert one_line(error).endswith("(debugmodel: dim 64 vs 2048; 1.1B: n_layers 22 vs 24)")


def test_runtime_sections_outside_a_package(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path, "    overrides: {train_iters: 7, mock_data: true, lr: 0.01}\n")
    sections = load_runtime_sections(exp, environ=primus_env(tmp_path, WORKSPACE="/runs"))
    assert sections == {
        "training": {"steps": 7, "dataset": "mock"},
        "optimizer": {"lr": 0.01},
        "job": {
            "dump_folder": str(Path("/runs/amd/root/tiny-pretrain")),
            "description": "Primus experiment tiny-pretrain",
        },
    }
    JobConfig.from_dict(sections)


def test_runtime_sections_refuse_what_cannot_be_honoured(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path, "    overrides: {load: /ckpt, context_parallel_size: 2}\n")
    with pytest.raises(PrimusConfigError) as error:
        load_runtime_sections(exp, environ=primus_env(tmp_path))
    message = one_line(error)
    assert message.startswith("exp.yaml: the runtime cannot honour load:")
    assert "; context_parallel_size:" in message


def test_a_training_config_from_yaml_refuses_what_cannot_be_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = make_experiment(tmp_path, "    overrides: {context_parallel_size: 2}\n")
    monkeypatch.setenv("PRIMUS_PATH", primus_env(tmp_path)["PRIMUS_PATH"])
    with pytest.raises(ConfigError) as error:
        JobConfig.load(["--job.config_file", str(exp)])
    assert "exp.yaml: the runtime cannot honour context_parallel_size:" in str(error.value)


# ------------------------------------------------------------------ rendered TinyLlama YAML

TINYLLAMA_MODEL_PRESET = {
    "num_layers": 22,
    "hidden_size": 2048,
    "ffn_hidden_size": 5632,
    "num_attention_heads": 32,
    "num_query_groups": 4,
    "group_query_attention": True,
    "kv_channels": 64,
    "layernorm_epsilon": 1e-5,
    "untie_embeddings_and_output_weights": True,
    "add_qkv_bias": False,
    "add_bias_linear": False,
    "normalization": "RMSNorm",
    "swiglu": True,
    "position_embedding_type": "rope",
    "rotary_base": 10000,
    "max_position_embeddings": 2048,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "tokenizer_type": "HuggingFaceTokenizer",
    "tokenizer_model": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
}


@pytest.fixture(scope="module")
def tinyllama_experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Render TinyLlama (bundled config, offline) with the CLI; return its experiment YAML."""
    output = tmp_path_factory.mktemp("render")
    source = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    result = CliRunner().invoke(app, ["new-model", source, "--output", str(output), "--no-verify"])
    assert result.exit_code == 0, result.output
    return output / "tinyllama_1_1b_chat_v1_0" / "megatron" / "exp_pretrain.yaml"


def test_rendered_tinyllama_model_preset(tinyllama_experiment: Path) -> None:
    module = resolve_experiment(tinyllama_experiment, environ={}).modules["pre_trainer"]
    assert module.model_file.name == "tinyllama_1_1b_chat_v1_0.yaml"
    # Without PRIMUS_PATH: its own keys; the Primus preset it extends is reported, not read.
    preset, parents = load_yaml_without_extends(module.model_file, environ={})
    assert (preset, parents) == (module.model_preset, ("language_model.yaml",))
    assert module.unread == (
        UnreadPreset("primus/configs/modules/megatron/pre_trainer.yaml", "module preset"),
        UnreadPreset(
            "primus/configs/models/megatron/language_model.yaml",
            "extended by tinyllama_1_1b_chat_v1_0.yaml",
        ),
    )
    # Compare types too: a YAML string "1e-05" or an int 1 for true must not pass.
    actual = {key: (type(preset[key]), preset[key]) for key in TINYLLAMA_MODEL_PRESET}
    assert actual == {key: (type(v), v) for key, v in TINYLLAMA_MODEL_PRESET.items()}
    for key in ("seq_length", "make_vocab_size_divisible_by"):
        assert key not in preset
        assert key in module.overrides
    assert module.params["seq_length"] == 2048
    assert module.params["make_vocab_size_divisible_by"] == 128
    mapped = megatron_to_runtime(module)
    assert mapped["unsupported"] == mapped["architecture_notes"] == []


def test_rendered_tinyllama_loads_as_runtime_config(
    tinyllama_experiment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # Finding the flavor imports the rendered package: keep it out of other tests' way.
    monkeypatch.setattr(sys, "path", list(sys.path))
    package = "tinyllama_1_1b_chat_v1_0"
    for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("PRIMUS_TEAM", "PRIMUS_USER", "PRIMUS_EXP_NAME", "PRIMUS_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    printed = []
    try:
        sections = load_runtime_sections(tinyllama_experiment, environ={}, report=printed.append)
        capsys.readouterr()
        trained = JobConfig.load(["--job.config_file", str(tinyllama_experiment)])
        training_output = capsys.readouterr()
        monkeypatch.setenv("RANK", "1")
        JobConfig.load(["--job.config_file", str(tinyllama_experiment)])
        other_rank_output = capsys.readouterr()
    finally:
        for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
            del sys.modules[name]
    assert sections["model"] == {"flavor": "1.1B"}
    # Without PRIMUS_PATH, training says in one line which Primus presets it did not read (once:
    # rank 0 only), and goes on.
    (note,) = printed
    assert note.startswith("PRIMUS_PATH is not set, so these Primus presets were not read: ")
    assert "language_model.yaml (extended by tinyllama_1_1b_chat_v1_0.yaml)" in note
    assert (training_output.out, training_output.err) == (f"note: {note}\n", "")
    assert (other_rank_output.out, other_rank_output.err) == ("", "")
    # Training reads the YAML through the same function.
    assert {
        name: {key: getattr(getattr(trained, name), key) for key in values}
        for name, values in sections.items()
    } == sections
    assert sections["job"]["dump_folder"] == str(
        Path("./output/scaffold/user/tinyllama_1_1b_chat_v1_0-pretrain")
    )
    config = JobConfig.from_dict(sections)
    assert (config.training.seq_len, config.training.steps) == (2048, 50)
    assert (config.training.local_batch_size, config.training.global_batch_size) == (2, 16)
    assert config.training.dataset == "mock"
    assert config.optimizer.lr == 3.0e-4


def test_rendered_tinyllama_reads_primus_presets_from_a_primus_checkout(
    tinyllama_experiment: Path, tmp_path: Path
) -> None:
    """With PRIMUS_PATH, only the checkout's presets are read (the model preset must have been
    copied there first), merged as Primus merges them. The checkout is a fake with short presets
    of our own: it sets trainer values the experiment's overrides restate."""
    checkout = tmp_path / "primus"
    configs = checkout / "primus" / "configs"
    write(
        configs / "modules" / "megatron" / "pre_trainer.yaml",
        "weight_decay: 0.0\nadam_beta2: 0.999\nfinetune: true\nfrom_module: true\n",
    )
    write(configs / "models" / "megatron" / "language_model.yaml", "swiglu: false\nfrom_lm: 1\n")
    environ = {"PRIMUS_PATH": str(checkout)}
    with pytest.raises(PrimusConfigError) as error:
        resolve_experiment(tinyllama_experiment, environ=environ)
    folder = configs / "models" / "megatron"
    assert one_line(error).endswith(
        f"model preset 'tinyllama_1_1b_chat_v1_0.yaml' not found in {folder}/; copy the "
        "package's megatron/models/tinyllama_1_1b_chat_v1_0.yaml into "
        "primus/configs/models/megatron/ of that checkout (Primus reads model presets only "
        "there), or unset PRIMUS_PATH to read it from the package"
    )

    # Step 1 of docs/megatron.md: copy the package's model preset into the checkout.
    shutil.copy(tinyllama_experiment.parent / "models" / "tinyllama_1_1b_chat_v1_0.yaml", folder)
    module = resolve_experiment(tinyllama_experiment, environ=environ).modules["pre_trainer"]
    package = resolve_experiment(tinyllama_experiment, environ={}).modules["pre_trainer"]
    assert module.config_file == configs / "modules" / "megatron" / "pre_trainer.yaml"
    assert module.model_file == folder / "tinyllama_1_1b_chat_v1_0.yaml"
    assert module.unread == () and module.shadowed == ()
    # The model preset's own keys win over what it extends; Primus's trainer values arrive, and
    # the experiment's overrides win over them.
    assert module.model_preset == {**package.model_preset, "from_lm": 1}
    assert module.params == {**package.params, "from_lm": 1, "from_module": True}
    assert (module.params["weight_decay"], module.params["adam_beta2"]) == (0.1, 0.95)
    assert (module.params["finetune"], module.params["swiglu"]) == (False, True)


def test_an_older_package_s_base_yamls_are_not_read(tinyllama_experiment: Path, tmp_path: Path):
    """Packages before this layout shipped copies of Primus's base presets; one left behind
    (edited, so regenerate kept it) is read neither by Primus nor by the runtime."""
    package = tmp_path / "old"
    shutil.copytree(tinyllama_experiment.parent.parent, package)
    experiment = package / "megatron" / "exp_pretrain.yaml"
    before = resolve_experiment(experiment, environ={}).modules["pre_trainer"].params
    write(package / "megatron" / "models" / "language_model.yaml", "swiglu: false\nold: true\n")
    write(package / "megatron" / "modules" / "pre_trainer.yaml", "weight_decay: 0.5\nold: true\n")
    module = resolve_experiment(experiment, environ={}).modules["pre_trainer"]
    assert module.params == before
    assert (module.config_file, module.module_preset) == (None, {})


def test_megatron_defaults_for_inert_keys_are_not_noted() -> None:
    """norm_epsilon and rope_scaling_factor reach no GPT model; set to Megatron's defaults (as
    Primus's language_model.yaml sets them) they change nothing, so they are not noted; any
    other value is (see the two tests above)."""
    mapped = megatron_to_runtime({**LLAMA_PARAMS, "norm_epsilon": 1e-5, "rope_scaling_factor": 8.0})
    assert mapped["architecture_notes"] == []


# ------------------------------------------------------------------ against a real Primus

EXAMPLES = Path(__file__).resolve().parent.parent / "generated_examples"


@pytest.mark.skipif(not os.environ.get("PRIMUS_SRC"), reason="PRIMUS_SRC names no Primus checkout")
def test_examples_train_the_same_with_and_without_primus_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/megatron.md's claim, against a real Primus (PRIMUS_SRC, as for
    ../shared/tools/primus_accept.py): every example's experiment gives the runtime the same
    JobConfig from Primus's presets (PRIMUS_PATH: a scratch copy of the checkout's
    primus/configs/ with the model preset copied in) as from the package alone."""
    checkout = tmp_path / "primus"
    shutil.copytree(
        Path(os.environ["PRIMUS_SRC"]) / "primus" / "configs", checkout / "primus" / "configs"
    )
    models = checkout / "primus" / "configs" / "models" / "megatron"
    monkeypatch.setattr(sys, "path", list(sys.path))
    experiments = sorted(EXAMPLES.glob("*/megatron/exp_pretrain.yaml"))
    packages = {experiment.parent.parent.name for experiment in experiments}
    assert packages
    try:
        for experiment in experiments:
            for preset in (experiment.parent / "models").glob("*.yaml"):
                shutil.copy(preset, models)
            with_primus = load_runtime_sections(experiment, environ={"PRIMUS_PATH": str(checkout)})
            alone = load_runtime_sections(experiment, environ={})
            assert JobConfig.from_dict(with_primus).to_dict() == (
                JobConfig.from_dict(alone).to_dict()
            ), experiment.parent.parent.name
    finally:
        # Finding each flavor imported the example packages: keep them out of other tests' way.
        for name in [n for n in sys.modules if n.partition(".")[0] in packages]:
            del sys.modules[name]


def test_moe_balancing_and_expert_parallel_map_onto_the_runtime() -> None:
    experts = {**LLAMA_PARAMS, "num_experts": 8, "expert_model_parallel_size": 2}
    mapped = megatron_to_runtime(
        {
            **experts,
            "moe_router_load_balancing_type": ["aux_loss"],
            "moe_aux_loss_coeff": [0.02],
        }
    )["sections"]
    assert mapped["moe"] == {"load_balancing": "aux_loss", "aux_loss_coef": 0.02}
    assert mapped["parallelism"]["expert_parallel_degree"] == 2
    bias = megatron_to_runtime(
        {
            **experts,
            "moe_router_load_balancing_type": "none",
            "moe_router_enable_expert_bias": True,
            "moe_router_bias_update_rate": 0.01,
        }
    )["sections"]["moe"]
    assert bias == {"load_balancing": "expert_bias", "expert_bias_update_rate": 0.01}
    sinkhorn = megatron_to_runtime({**experts, "moe_router_load_balancing_type": "sinkhorn"})
    assert any("sinkhorn" in note for note in sinkhorn["unsupported"])
    assert megatron_to_runtime(LLAMA_PARAMS)["sections"]["moe"] == {}
    with pytest.raises(PrimusConfigError, match="moe_aux_loss_coeff"):
        megatron_to_runtime({**experts, "moe_aux_loss_coeff": "high"})


def test_yaml_aliases_are_refused_so_an_alias_bomb_costs_nothing(tmp_path) -> None:
    """Nested aliases of aliases would make ${VAR} expansion exponential: refused at once."""
    levels = "abcdefghi"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{new}: &{new} [{', '.join([f'*{old}'] * 9)}]\n"
        for old, new in zip(levels, levels[1:], strict=False)
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    with pytest.raises(PrimusConfigError, match=r"line 2: aliases \(\*a\) are not supported"):
        load_yaml_with_extends(path, environ={})
